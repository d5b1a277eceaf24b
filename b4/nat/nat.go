// Package nat is the lwB4's NAPT44 (RFC 7596 §5.2.1): it translates IPv4
// packets between the LAN's private addresses and the one public IPv4
// address the B4 is provisioned with, restricted to its port set, following
// RFC 4787 (UDP), RFC 5382 (TCP) and RFC 5508 (ICMP).
//
// Packets are rewritten in place on byte slices, outside any network stack.
// A Table is safe for concurrent use; one mutex guards it and is held only
// for the table lookup, never while rewriting a packet or reading the clock.
// Translating a packet of an existing session allocates nothing.
//
// Behaviour, with the requirement each choice answers:
//
//   - Mapping is endpoint-independent (RFC 4787 REQ-1, RFC 5382 REQ-1,
//     RFC 5508 REQ-1a): one external port per (protocol, internal address,
//     internal port), reused for every destination. TCP, UDP and ICMP have
//     separate port spaces; the ICMP echo identifier is the ICMP "port"
//     (RFC 6346 §5.3.2, RFC 7596 §8). The internal port is kept when it is
//     in the set and free; otherwise a free port is probed linearly from a
//     random index of the set, preferring the internal port's parity
//     (RFC 4787 REQ-3, REQ-4). No port is ever shared by two mappings
//     (REQ-3: no port overloading). A full set is ErrPortsExhausted.
//   - Filtering is configurable (RFC 4787 REQ-8a, RFC 5382 REQ-3a) and
//     endpoint-independent by default; see Filtering. Explicit (PCP)
//     mappings accept any remote endpoint, or only those of their PCP
//     FILTERs (RFC 6887 §13.3).
//   - A session is kept per (mapping, remote address, remote port). Its
//     timer is refreshed by outbound packets (RFC 4787 REQ-6) and by inbound
//     packets that pass the filter (REQ-6a, a MAY we take). A mapping lives
//     while it has a live session or a live explicit lifetime. TCP sessions
//     use the established timeout once a SYN has been seen in each direction
//     (simultaneous open included, RFC 5382 REQ-2a) and the transitory one
//     before that, after FINs in both directions and after a RST
//     (RFC 5382 REQ-5). Expired entries are treated as absent at once and
//     removed by Expire, by the lookup that finds them, or by the port
//     allocator when the set is full.
//   - ICMP errors (destination unreachable, time exceeded, parameter
//     problem) are translated by the datagram they quote, in both
//     directions: RFC 5508 REQ-3 (ICMP and embedded IPv4 checksums checked,
//     embedded transport checksum not checked), REQ-4 and REQ-5 (embedded
//     headers reverted, type and code kept, outer address rewritten). They
//     need a live session for the quoted endpoints, are not filtered on the
//     outer source (RFC 4787 REQ-12a) and refresh nothing (RFC 4787 REQ-12,
//     RFC 5508 REQ-6). Other ICMP types and inbound echo requests
//     (RFC 6346 §5.3.2) are ErrUnsupported.
//   - Hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8, RFC 5508 REQ-7): an
//     Outbound packet addressed to the public address is translated twice,
//     source as usual then destination as if it had come in from the
//     translated source ("external source IP address and port", REQ-9a),
//     filter included; Outbound then reports hairpin = true and the caller
//     delivers the packet on the LAN instead of the softwire.
//   - Fragments: a first fragment is translated like a whole datagram (the
//     incremental checksum update is right for the whole datagram); a
//     non-first fragment has no ports and is ErrFragment. RFC 4787 REQ-14
//     and RFC 6333 want fragments handled: the caller reassembles in front
//     of the NAT (stack/frag) when it needs them.
//   - Checksums are updated incrementally (RFC 1624 eqn. 3): IPv4 header,
//     TCP/UDP with the pseudo-header, ICMP; a zero UDP checksum stays zero.
//     Transport checksums of the input must be complete (no offload
//     partial sums). The TTL is not touched.
//   - Input is validated before any state changes: a malformed packet is a
//     counted drop with a sentinel error, the packet is left as it was.
//   - SetExternal with a different address flushes every session and
//     mapping, explicit ones included (RFC 7596 §5.1); with the same
//     address and another port set it removes those whose external port
//     the new set does not hold and keeps the rest.
//   - Per-host quotas (RFC 6888 REQ-4, REQ-5): configurable limits on the
//     ports and sessions one LAN host holds; see quota.go.
//
// Not done: ALGs (RFC 4787 REQ-10 wants them off anyway), the port reuse
// hold-down of RFC 6888 REQ-8, sending ICMP errors (RFC 5508 REQ-8,
// RFC 6888 REQ-11, RFC 5382 REQ-4: the caller may on ErrPortsExhausted,
// ErrTooManySessions, ErrHostQuota or ErrFiltered; the B4 does for the
// first three),
// fragment reassembly or fragmentation (RFC 4787 REQ-13/14: the caller's).
package nat

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/lw4o6/lw4o6/stack/portset"
)

// Filtering selects which inbound packets a mapping lets through
// (RFC 4787 §5).
type Filtering uint8

const (
	// EndpointIndependent accepts packets from any remote endpoint to a
	// live mapping. It is the zero value and the default: RFC 4787 REQ-8
	// and RFC 5382 REQ-3 recommend it when application transparency matters
	// most, and RFC 6888 REQ-7 recommends it for CGNs, whose role the lwB4
	// takes over in lw4o6 (address sharing already costs the subscriber
	// inbound reachability; EIF keeps NAT traversal working).
	EndpointIndependent Filtering = iota
	// AddressDependent accepts packets from remote addresses the mapping
	// has a live session with, from any port (the recommendation of
	// REQ-8/REQ-3 when stricter filtering matters most).
	AddressDependent
	// AddressAndPortDependent accepts packets only from remote endpoints
	// (address and port) the mapping has a live session with.
	AddressAndPortDependent
)

func (f Filtering) String() string {
	switch f {
	case EndpointIndependent:
		return "endpoint-independent"
	case AddressDependent:
		return "address-dependent"
	case AddressAndPortDependent:
		return "address-and-port-dependent"
	}
	return fmt.Sprintf("Filtering(%d)", uint8(f))
}

// Default and minimum timeouts. A Config value of zero takes the default; a
// value below the minimum is raised to it, since the minimums are MUSTs.
const (
	DefaultUDPTimeout            = 5 * time.Minute // RFC 4787 REQ-5c (RECOMMENDED ≥ 5 min)
	MinUDPTimeout                = 2 * time.Minute // RFC 4787 REQ-5
	DefaultTCPEstablishedTimeout = 2*time.Hour + 4*time.Minute
	MinTCPEstablishedTimeout     = DefaultTCPEstablishedTimeout // RFC 5382 REQ-5
	DefaultTCPTransitoryTimeout  = 4 * time.Minute
	MinTCPTransitoryTimeout      = DefaultTCPTransitoryTimeout // RFC 5382 REQ-5
	DefaultICMPTimeout           = 60 * time.Second
	MinICMPTimeout               = DefaultICMPTimeout // RFC 5508 REQ-2
	DefaultMaxSessions           = 1 << 16
)

// Config configures a Table. The zero value is usable.
type Config struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Filtering is the inbound filtering behaviour for TCP, UDP and ICMP
	// echo replies; the zero value is EndpointIndependent.
	Filtering Filtering
	// Idle timeouts; see the Default*/Min* constants.
	UDPTimeout            time.Duration
	TCPEstablishedTimeout time.Duration
	TCPTransitoryTimeout  time.Duration
	ICMPTimeout           time.Duration
	// MaxSessions bounds the number of sessions (one per mapping and remote
	// endpoint) of all protocols; 0 means DefaultMaxSessions. Mappings are
	// bounded by the port set.
	MaxSessions int
	// Per-host quotas (quota.go), 0 meaning none: HostPorts is the most
	// mappings (external ports) one LAN host holds per protocol, or, when
	// it is 0, HostPortShare (0-1] of the ports held; HostSessions is the
	// most sessions one LAN host holds, all protocols. b4.DefaultConfig
	// sets DefaultHostPortShare and DefaultHostSessions.
	HostPorts     int
	HostPortShare float64
	HostSessions  int
}

// Table is the NAPT44 state: mappings, sessions and the provisioned external
// address and port set.
type Table struct {
	now         func() time.Time // nil: time.Since(base)
	base        time.Time
	filtering   Filtering
	timeout     [nProto]int64 // idle timeout per protocol; TCP's is the transitory one
	tcpEst      int64
	maxSessions int

	mu          sync.Mutex
	provisioned bool
	ext         uint32
	ports       portset.Set                 // the first set (SetExternal)
	nports      int                         // ports of all sets
	sets        []natSet                    // every set, the first one first (sets.go)
	byInt       [nProto]map[uint64]*mapping // key: intKey
	byExt       [nProto]map[uint16]*mapping // key: external port
	sessions    [nProto]map[uint64]*session // key: sessKey
	nmap        [nProto]int
	nsess       [nProto]int
	nsessAll    int
	nexplicit   int
	lastReap    [nProto]int64
	freeM       []*mapping
	freeS       []*session

	hosts        map[uint32]hostUse // per LAN host (quota.go)
	hostPorts    int
	hostShare    float64
	hostSessions int
	lastSweep    int64

	c counters
}

// New returns an empty, unprovisioned table: every packet is ErrNoExternal
// until SetExternal.
func New(cfg Config) *Table {
	t := &Table{
		now:         cfg.Now,
		filtering:   cfg.Filtering,
		maxSessions: cfg.MaxSessions,
	}
	for pi := range nProto {
		t.byInt[pi] = make(map[uint64]*mapping)
		t.byExt[pi] = make(map[uint16]*mapping)
		t.sessions[pi] = make(map[uint64]*session)
	}
	if t.now != nil {
		t.base = t.now()
	} else {
		t.base = time.Now()
	}
	if t.maxSessions <= 0 {
		t.maxSessions = DefaultMaxSessions
	}
	t.setQuotas(cfg)
	t.timeout[iUDP] = int64(timeout(cfg.UDPTimeout, DefaultUDPTimeout, MinUDPTimeout))
	t.timeout[iTCP] = int64(timeout(cfg.TCPTransitoryTimeout, DefaultTCPTransitoryTimeout, MinTCPTransitoryTimeout))
	t.timeout[iICMP] = int64(timeout(cfg.ICMPTimeout, DefaultICMPTimeout, MinICMPTimeout))
	t.tcpEst = int64(timeout(cfg.TCPEstablishedTimeout, DefaultTCPEstablishedTimeout, MinTCPEstablishedTimeout))
	return t
}

func timeout(v, def, lo time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return max(v, lo)
}

// clock is the time in nanoseconds since the table was made. With the
// default clock it reads only the monotonic clock (time.Since), half the
// cost of time.Now on the packet path.
func (t *Table) clock() int64 {
	if t.now == nil {
		return int64(time.Since(t.base))
	}
	return int64(t.now().Sub(t.base))
}

// ErrInvalid reports a bad argument to a control-plane method.
var ErrInvalid = errors.New("nat: invalid argument")

// SetExternal installs the provisioned public IPv4 address and port set. If
// either differs from the current one, every mapping and session is flushed
// first (RFC 7596 §5.1), and the sets AddSet added are dropped; setting the
// same values again changes nothing, added sets included.
func (t *Table) SetExternal(addr netip.Addr, ports portset.Set) error {
	addr = addr.Unmap()
	if !addr.Is4() {
		return fmt.Errorf("%w: external address %v is not IPv4", ErrInvalid, addr)
	}
	if ports == nil || ports.Len() == 0 {
		return fmt.Errorf("%w: empty port set", ErrInvalid)
	}
	a := addr4(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.provisioned && t.ext == a && samePorts(t.ports, ports) {
		return nil
	}
	if t.provisioned && t.ext == a {
		t.keepFittingLocked(ports)
	} else {
		t.flushLocked()
	}
	t.provisioned, t.ext, t.ports, t.nports = true, a, ports, ports.Len()
	// The sets AddSet added go too: they were on the old address or
	// beside the old first set (docs/port-sets.md).
	t.sets = append(t.sets[:0], natSet{ports: ports, n: ports.Len()})
	return nil
}

// keepFittingLocked removes the mappings (and their sessions) whose
// external port the new set ports does not hold, explicit ones included.
// RFC 7596 §5.1 wants the NAPT state flushed when the set changes; what
// still fits the new set under the same address is as valid as before, and
// keeping it lets flows survive an AFTR that gives (most of) the set back
// after a restart (issue 11 item 3).
func (t *Table) keepFittingLocked(ports portset.Set) {
	for pi := range nProto {
		for _, m := range t.byExt[pi] {
			if !ports.Contains(m.ext) {
				t.removeMapping(m)
			}
		}
		t.lastReap[pi] = 0
	}
}

func samePorts(a, b portset.Set) bool {
	if a.Len() != b.Len() {
		return false
	}
	for i := range a.Len() {
		if a.Nth(i) != b.Nth(i) {
			return false
		}
	}
	return true
}

// External returns the provisioned address and port set; ok is false when
// none is provisioned.
func (t *Table) External() (addr netip.Addr, ports portset.Set, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.provisioned {
		return netip.Addr{}, nil, false
	}
	return netip.AddrFrom4(be4(t.ext)), t.ports, true
}

// Clear deprovisions the table: no external address, nothing mapped. Packets
// are ErrNoExternal until the next SetExternal.
func (t *Table) Clear() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flushLocked()
	t.provisioned, t.ext, t.ports, t.nports = false, 0, nil, 0
	t.sets = t.sets[:0]
}

// Flush removes every mapping and session, explicit ones included, and
// keeps the external address and port set.
func (t *Table) Flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flushLocked()
}

// Expire removes expired sessions, expired explicit lifetimes and mappings
// left with neither. It walks the whole table (O(sessions + mappings) under
// the lock); the B4 calls it every few seconds.
func (t *Table) Expire() {
	now := t.clock()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expireLocked(now)
}

func (t *Table) expireLocked(now int64) {
	for pi := range nProto {
		for _, s := range t.sessions[pi] {
			if s.expires <= now {
				t.removeSession(s)
			}
		}
		for _, m := range t.byInt[pi] {
			if m.explicit && m.explicitUntil <= now {
				m.explicit, m.filters = false, nil
				t.nexplicit--
			}
			if !m.alive(now) {
				t.removeMapping(m)
			}
		}
	}
}

// AddExplicit creates or renews an explicit mapping (for the B4's LAN PCP
// server, RFC 6887 §11.3) from the same port set as implicit ones, for
// proto TCP (6) or UDP (17) and a non-zero internal port. An existing
// mapping of the internal endpoint, implicit or explicit, keeps its external
// port and gets lifetime (> 0) from now as its explicit lifetime. A new one
// takes suggestedExternalPort when it is in the set and free, else the
// internal port when it is, else any free port: the caller compares the
// result with its suggestion for PREFER_FAILURE. While the lifetime runs the
// mapping accepts packets from any remote endpoint, whatever the filtering.
func (t *Table) AddExplicit(proto uint8, internal netip.AddrPort, suggestedExternalPort uint16, lifetime time.Duration) (externalPort uint16, err error) {
	pi, iaddr, err := explicitArgs(proto, internal)
	if err != nil {
		return 0, err
	}
	if lifetime <= 0 {
		return 0, fmt.Errorf("%w: lifetime %v", ErrInvalid, lifetime)
	}
	now := t.clock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.provisioned {
		return 0, ErrNoExternal
	}
	m := t.byInt[pi][intKey(iaddr, internal.Port())]
	if m != nil && !m.alive(now) {
		t.removeMapping(m)
		m = nil
	}
	if m == nil {
		ext, ok := t.allocPort(pi, suggestedExternalPort, internal.Port(), now)
		if !ok {
			return 0, ErrPortsExhausted
		}
		m = t.newMapping(pi, iaddr, internal.Port(), ext, now)
	}
	if !m.explicit {
		m.explicit = true
		t.nexplicit++
	}
	m.explicitUntil = now + int64(lifetime)
	return m.ext, nil
}

// RemoveExplicit ends the explicit lifetime of the internal endpoint's
// mapping. The mapping itself lives on while it has live sessions, as PCP
// requires (RFC 6887 §15: a deletion must not make a mapping expire sooner
// than its traffic would); remaining is how long that is (0: the mapping is
// gone). ErrNoMapping: there is no explicit mapping for internal.
func (t *Table) RemoveExplicit(proto uint8, internal netip.AddrPort) (remaining time.Duration, err error) {
	pi, iaddr, err := explicitArgs(proto, internal)
	if err != nil {
		return 0, err
	}
	now := t.clock()
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.byInt[pi][intKey(iaddr, internal.Port())]
	if m == nil || !m.explicit {
		return 0, ErrNoMapping
	}
	m.explicit, m.filters = false, nil
	t.nexplicit--
	if !m.alive(now) {
		t.removeMapping(m)
		return 0, nil
	}
	return time.Duration(m.expires - now), nil
}

func explicitArgs(proto uint8, internal netip.AddrPort) (int, uint32, error) {
	if proto != protoTCP && proto != protoUDP {
		return 0, 0, fmt.Errorf("%w: protocol %d", ErrUnsupported, proto)
	}
	pi, _ := protoIndex(proto)
	a := internal.Addr().Unmap()
	if !a.Is4() || internal.Port() == 0 {
		return 0, 0, fmt.Errorf("%w: internal endpoint %v", ErrInvalid, internal)
	}
	return pi, addr4(a), nil
}

// Sessions is the number of sessions, all protocols, expired ones not yet
// removed included.
func (t *Table) Sessions() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nsessAll
}

// Stats returns the counters and gauges.
func (t *Table) Stats() Stats {
	s := Stats{
		TranslatedOut: t.c.out.Load(),
		TranslatedIn:  t.c.in.Load(),
		Hairpinned:    t.c.hairpin.Load(),
		DropOut:       t.c.drops(dirOut),
		DropIn:        t.c.drops(dirIn),
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s.TCPSessions, s.UDPSessions, s.ICMPSessions = t.nsess[iTCP], t.nsess[iUDP], t.nsess[iICMP]
	s.Mappings = t.nmap[iTCP] + t.nmap[iUDP] + t.nmap[iICMP]
	s.Explicit = t.nexplicit
	t.setStats(&s)
	t.quotaStats(&s)
	return s
}

func addr4(a netip.Addr) uint32 {
	b := a.As4()
	return be32(b[:])
}

func be4(a uint32) [4]byte { return [4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)} }
