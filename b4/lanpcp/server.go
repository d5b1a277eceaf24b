// Package lanpcp is the B4's port-mapping server for its LAN (PROTOCOL.md §8
// item 7, RFC 7648 §3.2: the B4 terminates PCP): PCP (RFC 6887) and NAT-PMP
// (RFC 6886) on UDP 5351, both served from the B4's own port set through
// its NAT's explicit mappings. A LAN request never triggers a request to the
// AFTR.
//
// Server.Handle turns one request datagram and its source into the answer
// datagram; it owns no socket, so the B4 serves it on its LAN link and the
// daemon on host sockets. Version negotiation follows RFC 6887 §9: version 0
// is NAT-PMP, version 2 PCP, anything else UNSUPP_VERSION (naming 2).
//
// Policy (RFC 6887 §11.3, §12.3, §13, §15, §18.1 Simple Threat Model):
//
//   - MAP for TCP and UDP creates or refreshes an explicit inbound mapping;
//     an existing outbound mapping keeps its port (§11.3 item 4). Protocol 0
//     (DMZ host) and internal port 0 (all ports) cannot be met on a port set
//     shared with the LAN's other flows: UNSUPP_PROTOCOL (§11.3).
//   - Each explicit mapping remembers its Mapping Nonce: another nonce (or,
//     through THIRD_PARTY, another host) gets NOT_AUTHORIZED with the
//     mapping's remaining lifetime, and cannot delete or alter it.
//   - Lifetimes are clamped to [MinLifetime, MaxLifetime] (§15); a delete
//     answers the time the mapping's own traffic still keeps it (§15).
//   - PREFER_FAILURE: the suggested port exactly or CANNOT_PROVIDE_EXTERNAL.
//     FILTER lists are kept per mapping and enforced by the NAT; prefix
//     length 0 clears them (§13.3); past MaxFilters EXCESSIVE_REMOTE_PEERS.
//   - DESCRIPTION is stored and echoed (RFC 7220). THIRD_PARTY is refused
//     (UNSUPP_OPTION) unless the source is in Config.ThirdParty.
//   - NETWORK_FAILURE (short lifetime) while the B4 holds no port set;
//     NO_RESOURCES when the set is full; USER_EX_QUOTA past MaxPerHost
//     mappings of one internal host. UDP and TCP ports 5350 and 5351 are
//     never given to a mapping (§11.3), and every answer's port is inside
//     the set.
//   - Static forwards (Config.Static) are permanent explicit mappings,
//     re-installed on every (re)provisioning; a MAP for one returns it with
//     lifetime 2^32-1 (§11.3 item 2), a delete is NOT_AUTHORIZED (§15.1).
//   - A per-host token bucket bounds the request rate; excess requests are
//     counted drops.
//
// When the B4's public address or port set changes (or it starts) the
// server drops the mappings the NAT no longer holds, resets its Epoch (§8.5)
// and multicasts ANNOUNCE and NAT-PMP's address announcement to
// 224.0.0.1:5350, ten copies from 250 ms apart, doubling (RFC 6887 §14.1.3,
// RFC 6886 §3.2.1), so that LAN clients re-create their mappings.
package lanpcp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lw4o6/lw4o6/b4/nat"
	"github.com/lw4o6/lw4o6/stack/pcp"
	"github.com/lw4o6/lw4o6/stack/portset"
)

// Ports of the protocols (RFC 6887 §19.1, RFC 6886 §3).
const (
	ServerPort = pcp.ServerPort // 5351
	ClientPort = pcp.ClientPort // 5350
)

// AnnounceGroup is where announcements go (RFC 6887 §14.1.3, RFC 6886
// §3.2.1).
var AnnounceGroup = netip.AddrPortFrom(netip.AddrFrom4([4]byte{224, 0, 0, 1}), ClientPort)

// Table is what the server needs of the B4's NAT; *nat.Table is one.
type Table interface {
	External() (netip.Addr, portset.Set, bool)
	MapExplicit(nat.ExplicitRequest) (nat.MappingInfo, error)
	RemoveExplicit(proto uint8, internal netip.AddrPort) (time.Duration, error)
	Peer(proto uint8, internal, remote netip.AddrPort, suggested uint16, lifetime time.Duration, avoid func(uint16) bool) (nat.MappingInfo, error)
	Mapping(proto uint8, internal netip.AddrPort) (nat.MappingInfo, bool)
	ExplicitMappings() []nat.MappingInfo
}

// Forward is a static port forward: External on the public address to
// Internal, for Proto (TCP or UDP).
type Forward struct {
	Proto    uint8
	External uint16 // wanted; another port of the set when it is outside it or taken
	Internal netip.AddrPort
}

func (f Forward) String() string {
	return fmt.Sprintf("%s:%d=%v", protoName(f.Proto), f.External, f.Internal)
}

// Config configures a Server. Zero fields take the defaults.
type Config struct {
	// MinLifetime and MaxLifetime bound granted lifetimes (RFC 6887 §15:
	// the minimum SHOULD be 120 s, the maximum 24 h). Defaults 120 s, 24 h.
	MinLifetime, MaxLifetime time.Duration
	// MaxPerHost is the per-host quota of PCP and NAT-PMP mappings
	// (USER_EX_QUOTA past it, RFC 6887 §11.3, §17.2); default 64.
	MaxPerHost int
	// MaxMappings bounds all of them together (NO_RESOURCES); default 4096.
	MaxMappings int
	// MaxFilters bounds FILTERs per mapping (EXCESSIVE_REMOTE_PEERS,
	// RFC 6887 §13.3); default 8.
	MaxFilters int
	// Rate and Burst are the per-host token bucket: requests per second
	// and the burst; defaults 20 and 40. MaxHosts bounds the hosts it
	// tracks (default 1024): past it requests from new hosts are dropped.
	Rate     float64
	Burst    int
	MaxHosts int
	// ThirdParty lists the sources allowed THIRD_PARTY (RFC 6887 §13.1);
	// empty refuses it for every host.
	ThirdParty []netip.Prefix
	// Static are the permanent forwards.
	Static []Forward
	Now    func() time.Time
	Logger *slog.Logger
}

func (c *Config) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.MinLifetime <= 0 {
		c.MinLifetime = 120 * time.Second
	}
	if c.MaxLifetime <= 0 {
		c.MaxLifetime = 24 * time.Hour
	}
	c.MaxLifetime = max(c.MaxLifetime, c.MinLifetime)
	def(&c.MaxPerHost, 64)
	def(&c.MaxMappings, 4096)
	def(&c.MaxFilters, 8)
	def(&c.Burst, 40)
	def(&c.MaxHosts, 1024)
	if c.Rate <= 0 {
		c.Rate = 20
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Server is the LAN port-mapping server. It is safe for concurrent use.
type Server struct {
	cfg   Config
	table Table
	log   *slog.Logger
	pcp   *pcp.Server

	mu          sync.Mutex
	recs        map[key]*record
	provisioned bool
	ext         netip.Addr
	ports       portset.Set
	forwards    []ForwardStatus
	limit       limiter

	trigger chan struct{}
	sinkMu  sync.Mutex
	sinks   map[int]func([]byte)
	nextID  int

	c counters
}

// New returns a server over table. Run sends its announcements.
func New(cfg Config, table Table) *Server {
	cfg.defaults()
	s := &Server{
		cfg:     cfg,
		table:   table,
		log:     cfg.Logger,
		recs:    make(map[key]*record),
		trigger: make(chan struct{}, 1),
		sinks:   make(map[int]func([]byte)),
		limit:   limiter{rate: cfg.Rate, burst: float64(cfg.Burst), max: cfg.MaxHosts, hosts: make(map[netip.Addr]*bucket)},
	}
	s.pcp = pcp.NewServer(pcp.ServerConfig{
		Handler:           (*pcpHandler)(s),
		Now:               cfg.Now,
		Logger:            cfg.Logger,
		ThirdPartyAllowed: s.thirdPartyAllowed,
	})
	s.trigger <- struct{}{} // RFC 6887 §14.1.3: announce on start
	return s
}

func (s *Server) thirdPartyAllowed(client any) bool {
	a, ok := client.(netip.Addr)
	if !ok {
		return false
	}
	for _, p := range s.cfg.ThirdParty {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// Epoch is the server's Epoch Time (RFC 6887 §8.5; NAT-PMP's seconds since
// start of epoch, RFC 6886 §3.6).
func (s *Server) Epoch() uint32 { return s.pcp.Epoch() }

// Handle answers one request datagram from src (a LAN host's address and
// port); nil means no answer (dropped: rate, malformed NAT-PMP, a
// response). Version 0 is NAT-PMP, every other version goes to the PCP core
// (RFC 6887 §9).
func (s *Server) Handle(req []byte, src netip.AddrPort) []byte {
	a := src.Addr().Unmap()
	if !a.IsValid() || len(req) < 2 {
		s.c.dropMalformed.Add(1)
		return nil
	}
	s.mu.Lock()
	ok := s.limit.allow(a, s.cfg.Now())
	s.mu.Unlock()
	if !ok {
		s.c.dropRate.Add(1)
		return nil
	}
	if req[0] == 0 {
		s.c.natpmp.Add(1)
		return s.handleNATPMP(req, a)
	}
	s.c.pcp.Add(1)
	out := s.pcp.Handle(req, a, a)
	if out == nil {
		s.c.dropMalformed.Add(1)
	}
	return out
}

// Subscribe registers send for announcements: it is given each payload to
// send from port 5351 to AnnounceGroup. cancel unregisters it.
func (s *Server) Subscribe(send func(payload []byte)) (cancel func()) {
	s.sinkMu.Lock()
	id := s.nextID
	s.nextID++
	s.sinks[id] = send
	s.sinkMu.Unlock()
	return func() {
		s.sinkMu.Lock()
		delete(s.sinks, id)
		s.sinkMu.Unlock()
	}
}

// Announcement timing (RFC 6887 §14.1.3, RFC 6886 §3.2.1): ten copies, the
// first gap 250 ms, each later gap double the one before.
const (
	announceCopies   = 10
	announceFirstGap = 250 * time.Millisecond
)

// Run sends the announcements until ctx is done: a schedule starts at once
// (the server just started) and again at every change of the public address
// or port set, a new one replacing one under way.
func (s *Server) Run(ctx context.Context) {
	var timer *time.Timer
	var tc <-chan time.Time
	sent, gap := 0, announceFirstGap
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case <-s.trigger:
			sent, gap = 0, announceFirstGap
		case <-tc:
		}
		s.announceOnce()
		sent++
		if timer != nil {
			timer.Stop()
		}
		tc = nil
		if sent < announceCopies {
			timer = time.NewTimer(gap)
			tc = timer.C
			gap *= 2
		}
	}
}

// announceOnce sends one ANNOUNCE (and, when provisioned, one NAT-PMP
// external address announcement) to every sink, with the current Epoch.
func (s *Server) announceOnce() {
	payloads := [][]byte{s.pcp.Announce()}
	if ext, _, ok := s.table.External(); ok {
		payloads = append(payloads, s.natpmpAddress(ext, true))
	}
	s.sinkMu.Lock()
	sinks := make([]func([]byte), 0, len(s.sinks))
	for _, f := range s.sinks {
		sinks = append(sinks, f)
	}
	s.sinkMu.Unlock()
	for _, f := range sinks {
		for _, p := range payloads {
			f(append([]byte(nil), p...))
			s.c.announce.Add(1)
		}
	}
}

// ForwardStatus is a static forward as installed.
type ForwardStatus struct {
	Forward
	External uint16 // the port it got (0: not installed)
	Err      error
}

// Provisioned tells the server the B4's public address and port set, on
// every (re)provisioning and renewal, after the NAT has them. A change (or
// the first call after Deprovisioned) drops the mappings the NAT no longer
// holds, re-installs the static forwards, resets the Epoch and starts an
// announcement schedule (RFC 6887 §8.5, §14.1.3). It returns the static
// forwards as installed.
func (s *Server) Provisioned(ext netip.Addr, ports portset.Set) []ForwardStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	same := s.ext == ext && s.ports != nil && samePorts(ports, s.ports)
	if s.provisioned && same {
		return s.forwards
	}
	s.provisioned, s.ext, s.ports = true, ext, ports
	now := s.cfg.Now()
	for k, r := range s.recs {
		mi, ok := s.table.Mapping(k.proto, k.internal)
		keep := ok && mi.External == r.ext && ports.Contains(r.ext) && !r.static
		if r.mapOwned && !mi.Explicit {
			keep = false
		}
		if !keep || !r.live(now) {
			delete(s.recs, k)
		}
	}
	s.forwards = s.installStatic(now)
	if same {
		// The same set back after a lost binding: the NAT kept what it
		// held, so the clients' mappings stand and nothing is announced.
		return s.forwards
	}
	s.pcp.ResetEpoch()
	select {
	case s.trigger <- struct{}{}:
	default:
	}
	return s.forwards
}

// staticLifetime is the NAT lifetime of a static forward: it outlives any
// binding; the next provisioning installs it again.
const staticLifetime = 10 * 365 * 24 * time.Hour

func (s *Server) installStatic(now time.Time) []ForwardStatus {
	var out []ForwardStatus
	for _, f := range s.cfg.Static {
		fs := ForwardStatus{Forward: f}
		mi, err := s.table.MapExplicit(nat.ExplicitRequest{
			Proto: f.Proto, Internal: f.Internal, Suggested: f.External,
			Lifetime: staticLifetime, SetFilters: true, Avoid: avoidPCP,
		})
		if err != nil {
			fs.Err = err
			s.log.Warn("static forward not installed", "forward", f, "err", err)
		} else {
			fs.External = mi.External
			s.recs[key{f.Proto, f.Internal}] = &record{key: key{f.Proto, f.Internal}, ext: mi.External, static: true, owner: "static"}
			if mi.External != f.External {
				s.log.Warn("static forward: wanted port outside the set or taken, using another", "forward", f, "external", mi.External)
			}
		}
		out = append(out, fs)
	}
	return out
}

// Deprovisioned tells the server the B4 lost its port set (and its NAT
// table): every mapping is gone; requests get NETWORK_FAILURE until the
// next Provisioned.
func (s *Server) Deprovisioned() {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The records stay: the B4 asks for the same set again and the NAT
	// keeps the mappings that fit what it gets (Provisioned sorts them).
	s.provisioned = false
}

// Mapping is one explicit mapping, for status.
type Mapping struct {
	Proto       uint8
	Internal    netip.AddrPort
	External    uint16
	Left        time.Duration // explicit lifetime left (static: effectively forever)
	Owner       string        // "static", "pcp <client>", "nat-pmp <client>", "" (made through the B4's API)
	Description string
}

func (m Mapping) String() string {
	left := m.Left.Round(time.Second).String()
	if m.Owner == "static" {
		left = "permanent"
	}
	s := fmt.Sprintf("%s %d -> %v (%s", protoName(m.Proto), m.External, m.Internal, left)
	if m.Owner != "" {
		s += ", " + m.Owner
	}
	if m.Description != "" {
		s += fmt.Sprintf(", %q", m.Description)
	}
	return s + ")"
}

// Mappings lists the NAT's live explicit mappings with their owners.
func (s *Server) Mappings() []Mapping {
	ms := s.table.ExplicitMappings()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Mapping, 0, len(ms))
	for _, mi := range ms {
		m := Mapping{Proto: mi.Proto, Internal: mi.Internal, External: mi.External, Left: mi.ExplicitLeft}
		if r := s.recs[key{mi.Proto, mi.Internal}]; r != nil {
			m.Owner, m.Description = r.owner, r.desc
		}
		out = append(out, m)
	}
	return out
}

// Stats are the server's counters.
type Stats struct {
	PCPRequests, NATPMPRequests uint64
	DropRate, DropMalformed     uint64
	Announcements               uint64
	Mappings                    int // PCP and NAT-PMP records held
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	n := len(s.recs)
	s.mu.Unlock()
	return Stats{
		PCPRequests: s.c.pcp.Load(), NATPMPRequests: s.c.natpmp.Load(),
		DropRate: s.c.dropRate.Load(), DropMalformed: s.c.dropMalformed.Load(),
		Announcements: s.c.announce.Load(), Mappings: n,
	}
}

type counters struct {
	pcp, natpmp, dropRate, dropMalformed, announce atomic.Uint64
}

// avoidPCP keeps PCP's own ports out of every mapping: RFC 6887 §11.3
// forbids client mappings on external UDP 5350 and 5351; TCP is kept off
// them too, so that no answer ever names them.
func avoidPCP(p uint16) bool { return p == ClientPort || p == ServerPort }

func samePorts(a, b portset.Set) bool {
	if a == nil || b == nil || a.Len() != b.Len() {
		return false
	}
	for i := range a.Len() {
		if a.Nth(i) != b.Nth(i) {
			return false
		}
	}
	return true
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	}
	return fmt.Sprintf("proto%d", p)
}
