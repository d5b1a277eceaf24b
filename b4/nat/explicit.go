package nat

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"
)

// The control plane of the B4's LAN PCP server (RFC 6887 §11.3, §12.3,
// §13.3): explicit mappings with a chosen port and remote-peer filters,
// PEER-held sessions, and the views the server and the B4's status need.

// Filter admits inbound packets from a remote prefix and port (0: any port)
// to an explicit mapping (RFC 6887 §13.3). An IPv6 prefix admits nothing
// here (the NAT only sees IPv4 peers) but still restricts the mapping.
type Filter struct {
	Prefix netip.Prefix
	Port   uint16
}

func admitsFilters(fs []Filter, raddr uint32, rport uint16) bool {
	a := netip.AddrFrom4(be4(raddr))
	for _, f := range fs {
		if f.Prefix.Addr().Is4() && f.Prefix.Contains(a) && (f.Port == 0 || f.Port == rport) {
			return true
		}
	}
	return false
}

// ExplicitRequest creates or refreshes an explicit mapping (MapExplicit).
type ExplicitRequest struct {
	Proto    uint8 // TCP (6) or UDP (17)
	Internal netip.AddrPort
	// Suggested is the external port asked for (0: none). A new mapping
	// takes it when it is in the set, free and not avoided, else the
	// internal port on the same terms, else any free port.
	Suggested uint16
	// Exact makes anything but Suggested ErrPortUnavailable, for an
	// existing mapping too (RFC 6887 §13.2 PREFER_FAILURE).
	Exact    bool
	Lifetime time.Duration // > 0: the explicit lifetime from now
	// SetFilters replaces the mapping's filters with Filters (nil or
	// empty: every remote peer); otherwise they are kept.
	SetFilters bool
	Filters    []Filter
	// Avoid names external ports never given to a new mapping (PCP's own
	// 5350 and 5351, RFC 6887 §11.3); an existing mapping on one is
	// ErrPortUnavailable.
	Avoid func(port uint16) bool
}

// MappingInfo describes one mapping.
type MappingInfo struct {
	Proto    uint8
	Internal netip.AddrPort
	External uint16
	// Explicit is set while an explicit lifetime runs; ExplicitLeft is
	// what remains of it.
	Explicit     bool
	ExplicitLeft time.Duration
	// IdleLeft is how long the mapping's sessions keep it alive.
	IdleLeft time.Duration
	Filters  []Filter
}

// ErrPortUnavailable: an explicit request's port cannot be the one asked
// for (ExplicitRequest.Exact, Avoid) or a PEER's suggested port is taken.
var ErrPortUnavailable = errors.New("nat: requested external port unavailable")

// MapExplicit creates or refreshes an explicit mapping. An existing mapping
// of the internal endpoint, implicit or explicit, keeps its external port
// (RFC 6887 §11.3 items 3-4) and gets the lifetime from now. While the
// lifetime runs the mapping admits every remote peer, or only its filters'.
// On error nothing changed.
func (t *Table) MapExplicit(r ExplicitRequest) (MappingInfo, error) {
	pi, iaddr, err := explicitArgs(r.Proto, r.Internal)
	if err != nil {
		return MappingInfo{}, err
	}
	if r.Lifetime <= 0 {
		return MappingInfo{}, fmt.Errorf("%w: lifetime %v", ErrInvalid, r.Lifetime)
	}
	now := t.clock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.provisioned {
		return MappingInfo{}, ErrNoExternal
	}
	m := t.byInt[pi][intKey(iaddr, r.Internal.Port())]
	if m != nil && !m.alive(now) {
		t.removeMapping(m)
		m = nil
	}
	switch {
	case m != nil:
		if (r.Exact && m.ext != r.Suggested) || (r.Avoid != nil && r.Avoid(m.ext)) {
			return MappingInfo{}, ErrPortUnavailable
		}
	case r.Exact:
		if !t.usable(pi, r.Suggested, r.Avoid, now) {
			return MappingInfo{}, ErrPortUnavailable
		}
		m = t.newMapping(pi, iaddr, r.Internal.Port(), r.Suggested, now)
	default:
		ext, ok := t.allocAvoiding(pi, r.Suggested, r.Internal.Port(), r.Avoid, now)
		if !ok {
			return MappingInfo{}, ErrPortsExhausted
		}
		m = t.newMapping(pi, iaddr, r.Internal.Port(), ext, now)
	}
	if !m.explicit {
		m.explicit = true
		t.nexplicit++
	}
	m.explicitUntil = now + int64(r.Lifetime)
	if r.SetFilters {
		m.filters = nil
		if len(r.Filters) > 0 {
			m.filters = append([]Filter(nil), r.Filters...)
		}
	}
	return t.info(m, now), nil
}

// Peer creates or refreshes the outbound mapping of internal and its
// session with remote (RFC 6887 §12.3), as an outbound packet would, and
// holds the session for at least lifetime. A new mapping takes suggested
// when it is non-zero (else ErrPortUnavailable) or a port chosen as for
// traffic; Avoid's ports are never taken for a new one. The mapping stays
// implicit: it lives by its sessions.
func (t *Table) Peer(proto uint8, internal, remote netip.AddrPort, suggested uint16, lifetime time.Duration, avoid func(uint16) bool) (MappingInfo, error) {
	pi, iaddr, err := explicitArgs(proto, internal)
	if err != nil {
		return MappingInfo{}, err
	}
	ra := remote.Addr().Unmap()
	if !ra.Is4() || ra.IsUnspecified() || ra.IsMulticast() || ra.IsLoopback() || remote.Port() == 0 {
		return MappingInfo{}, fmt.Errorf("%w: remote peer %v", ErrInvalid, remote)
	}
	raddr, rport := addr4(ra), remote.Port()
	now := t.clock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.provisioned {
		return MappingInfo{}, ErrNoExternal
	}
	m := t.byInt[pi][intKey(iaddr, internal.Port())]
	if m != nil && !m.alive(now) {
		t.removeMapping(m)
		m = nil
	}
	var s *session
	if m != nil {
		s = t.sessions[pi][sessKey(raddr, m.ext, rport)]
	}
	if s == nil && t.nsessAll >= t.maxSessions {
		return MappingInfo{}, ErrTooManySessions
	}
	if m == nil {
		ext := suggested
		if suggested != 0 {
			if !t.usable(pi, suggested, avoid, now) {
				return MappingInfo{}, ErrPortUnavailable
			}
		} else {
			var ok bool
			if ext, ok = t.allocAvoiding(pi, internal.Port(), 0, avoid, now); !ok {
				return MappingInfo{}, ErrPortsExhausted
			}
		}
		m = t.newMapping(pi, iaddr, internal.Port(), ext, now)
	}
	if s == nil {
		s = t.newSession(m, raddr, rport, now)
	} else if s.expires <= now {
		s.tcp = 0
	}
	s.hold = max(s.hold, now+int64(lifetime))
	t.touch(s, true, 0, now)
	info := t.info(m, now)
	info.IdleLeft = time.Duration(s.expires - now) // this session's, which PEER asked about
	return info, nil
}

// Mapping returns the live mapping of an internal endpoint, if any.
func (t *Table) Mapping(proto uint8, internal netip.AddrPort) (MappingInfo, bool) {
	pi, iaddr, err := explicitArgs(proto, internal)
	if err != nil {
		return MappingInfo{}, false
	}
	now := t.clock()
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.byInt[pi][intKey(iaddr, internal.Port())]
	if m == nil || !m.alive(now) {
		return MappingInfo{}, false
	}
	return t.info(m, now), true
}

// ExplicitMappings lists the live explicit mappings (at most the port set's
// size per protocol).
func (t *Table) ExplicitMappings() []MappingInfo {
	now := t.clock()
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []MappingInfo
	for pi := range nProto {
		for _, m := range t.byInt[pi] {
			if m.explicit && m.explicitUntil > now {
				out = append(out, t.info(m, now))
			}
		}
	}
	return out
}

// Fill is how full the port set is: mappings per protocol (implicit and
// explicit, expired ones not yet removed included), explicit ones of all
// protocols, and the set's size (each protocol has the whole set).
type Fill struct {
	TCP, UDP, ICMP int
	Explicit       int
	Size           int
}

// Fill returns the pool fill.
func (t *Table) Fill() Fill {
	t.mu.Lock()
	defer t.mu.Unlock()
	return Fill{TCP: t.nmap[iTCP], UDP: t.nmap[iUDP], ICMP: t.nmap[iICMP], Explicit: t.nexplicit, Size: t.nports}
}

func (f Fill) String() string {
	return fmt.Sprintf("tcp %d/%d udp %d/%d icmp %d/%d explicit %d", f.TCP, f.Size, f.UDP, f.Size, f.ICMP, f.Size, f.Explicit)
}

func (t *Table) info(m *mapping, now int64) MappingInfo {
	proto := [nProto]uint8{iTCP: protoTCP, iUDP: protoUDP, iICMP: protoICMP}[m.pi]
	mi := MappingInfo{
		Proto:    proto,
		Internal: netip.AddrPortFrom(netip.AddrFrom4(be4(m.intAddr)), m.intPort),
		External: m.ext,
		Filters:  append([]Filter(nil), m.filters...),
	}
	if m.explicit && m.explicitUntil > now {
		mi.Explicit, mi.ExplicitLeft = true, time.Duration(m.explicitUntil-now)
	}
	if m.expires > now {
		mi.IdleLeft = time.Duration(m.expires - now)
	}
	return mi
}

// usable reports whether port p may become a new mapping of protocol pi.
func (t *Table) usable(pi int, p uint16, avoid func(uint16) bool, now int64) bool {
	if p == 0 || !t.ports.Contains(p) || (avoid != nil && avoid(p)) {
		return false
	}
	if t.nmap[pi] >= t.nports && !t.reap(pi, now) {
		return false
	}
	return t.portFree(pi, p, now)
}

// allocAvoiding is allocPort without the ports avoid names.
func (t *Table) allocAvoiding(pi int, want1, want2 uint16, avoid func(uint16) bool, now int64) (uint16, bool) {
	if avoid == nil {
		return t.allocPort(pi, want1, want2, now)
	}
	if t.nmap[pi] >= t.nports && !t.reap(pi, now) {
		return 0, false
	}
	for _, w := range [2]uint16{want1, want2} {
		if w != 0 && t.ports.Contains(w) && !avoid(w) && t.portFree(pi, w, now) {
			return w, true
		}
	}
	n := t.nports
	start := rand.IntN(n)
	for i := range n {
		j := start + i
		if j >= n {
			j -= n
		}
		if p := t.ports.Nth(j); p != 0 && !avoid(p) && t.portFree(pi, p, now) {
			return p, true
		}
	}
	return 0, false
}
