package nat

import (
	"fmt"
	"math"
	"net/netip"
)

// Per-host quotas (RFC 6888 REQ-4, REQ-5; issue 11 item 7). The port set
// and the session table are shared by every LAN host: without a quota one
// host that opens flows as fast as it can takes every port, and every other
// host is refused until that host's mappings idle out (minutes for UDP,
// hours for established TCP). A LAN host is a LAN IPv4 source address, the
// B4's "subscriber".
//
//   - Ports: the mappings one host holds, per protocol (each protocol has
//     its own port space, RFC 6346 §5.3.2; REQ-4b allows a limit per
//     protocol). A new implicit mapping past the quota is refused.
//   - Sessions: one host's sessions of all protocols (REQ-5: state memory
//     per subscriber), whichever side opened them: a new session past the
//     quota is refused, outbound or inbound. Inbound too, because with
//     endpoint-independent filtering any Internet host can add sessions to
//     a mapping: counting them against the host they reach keeps such a
//     flood from filling the whole table (MaxSessions) for every host.
//
// A refusal is ErrHostQuota, a counted drop like ErrPortsExhausted: the
// packet is dropped (RFC 6888 REQ-11a) and nothing existing is removed to
// make room (REQ-11d); the host's existing flows go on, and the quota frees
// as its mappings and sessions expire.
//
// Explicit mappings (AddExplicit, MapExplicit) and PCP PEER sessions (Peer)
// are counted, since they hold ports and memory like any other, but never
// refused here: the LAN PCP server (b4/lanpcp) has its own per-host quota
// for them and answers USER_EX_QUOTA (RFC 6887 §11.3). A host's explicit
// mappings thus leave it that much less room for implicit ones.
//
// The counters live in a map with an entry per host that holds at least
// one mapping, removed when its last mapping goes: bounded by the table.
// They change only when a mapping or session is made or removed, under the
// table's lock: the packet of an existing session never touches them.

// Defaults for a B4 (b4.DefaultConfig; a zero nat.Config has no quota).
// A quarter is a fair share that still leaves a busy host room: four
// hosts at their quota fill the set, so one host alone, however greedy,
// leaves three quarters of the ports and sessions to the others.
const (
	DefaultHostPortShare = 0.25
	DefaultHostSessions  = DefaultMaxSessions / 4
)

// hostUse is what one LAN host holds.
type hostUse struct {
	ports    [nProto]int32 // mappings per protocol, explicit ones included
	sessions int32         // sessions, all protocols
}

// HostUsage is one LAN host's use of the table (HostUsage).
type HostUsage struct {
	// Mappings (external ports) per protocol, explicit ones and expired
	// ones not yet removed included.
	TCP, UDP, ICMP int
	Sessions       int
}

// ValidateQuotas reports a quota setting that makes no sense: a negative
// count, or a share outside [0, 1].
func (c Config) ValidateQuotas() error {
	switch {
	case c.HostPorts < 0:
		return fmt.Errorf("%w: HostPorts %d (0: no quota)", ErrInvalid, c.HostPorts)
	case c.HostSessions < 0:
		return fmt.Errorf("%w: HostSessions %d (0: no quota)", ErrInvalid, c.HostSessions)
	case !(c.HostPortShare >= 0 && c.HostPortShare <= 1):
		return fmt.Errorf("%w: HostPortShare %v, want a share in [0, 1] (0: none)", ErrInvalid, c.HostPortShare)
	}
	return nil
}

// setQuotas installs cfg's quotas; values ValidateQuotas refuses mean no
// quota (New returns no error).
func (t *Table) setQuotas(cfg Config) {
	t.hosts = make(map[uint32]hostUse)
	t.hostPorts = max(cfg.HostPorts, 0)
	t.hostSessions = max(cfg.HostSessions, 0)
	if s := cfg.HostPortShare; s > 0 && s <= 1 && !math.IsNaN(s) {
		t.hostShare = s
	}
}

// portQuota is the most mappings a host may hold per protocol, 0 for no
// quota (under t.mu): HostPorts, else HostPortShare of the ports held
// now, at least one.
func (t *Table) portQuota() int {
	if t.hostPorts > 0 {
		return t.hostPorts
	}
	if t.hostShare > 0 {
		return max(1, int(t.hostShare*float64(t.nports)))
	}
	return 0
}

// admitMapping reports whether host iaddr may have one more implicit
// mapping of protocol pi.
func (t *Table) admitMapping(pi int, iaddr uint32, now int64) bool {
	q := t.portQuota()
	if q == 0 || int(t.hosts[iaddr].ports[pi]) < q {
		return true
	}
	t.sweep(now)
	return int(t.hosts[iaddr].ports[pi]) < q
}

// admitSession reports whether host iaddr may have one more session.
func (t *Table) admitSession(iaddr uint32, now int64) bool {
	q := t.hostSessions
	if q == 0 || int(t.hosts[iaddr].sessions) < q {
		return true
	}
	t.sweep(now)
	return int(t.hosts[iaddr].sessions) < q
}

// sweep removes the dead sessions and mappings of the whole table, at most
// once per reapInterval: a host at its quota may be so only by entries that
// expired since the last Expire, and must not wait for the next one; a host
// that keeps hitting its quota costs one table walk a second at most.
func (t *Table) sweep(now int64) {
	if t.lastSweep != 0 && now-t.lastSweep < reapInterval {
		return
	}
	t.lastSweep = now
	t.expireLocked(now)
}

// hostMapping counts a mapping of host iaddr in (d = 1) or out (d = -1),
// dropping the host's entry with its last mapping (its sessions are gone
// by then: each belongs to one of its mappings).
func (t *Table) hostMapping(iaddr uint32, pi uint8, d int32) {
	h := t.hosts[iaddr]
	h.ports[pi] += d
	if h.ports == [nProto]int32{} && h.sessions == 0 {
		delete(t.hosts, iaddr)
		return
	}
	t.hosts[iaddr] = h
}

// hostSession counts a session of host iaddr in or out; the host has an
// entry, for the session's mapping.
func (t *Table) hostSession(iaddr uint32, d int32) {
	h := t.hosts[iaddr]
	h.sessions += d
	t.hosts[iaddr] = h
}

// HostUsage returns what LAN host addr holds now.
func (t *Table) HostUsage(addr netip.Addr) HostUsage {
	addr = addr.Unmap()
	if !addr.Is4() {
		return HostUsage{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.hosts[addr4(addr)]
	return HostUsage{TCP: int(h.ports[iTCP]), UDP: int(h.ports[iUDP]), ICMP: int(h.ports[iICMP]), Sessions: int(h.sessions)}
}

// quotaStats fills the per-host part of s (under t.mu).
func (t *Table) quotaStats(s *Stats) {
	s.Hosts = len(t.hosts)
	s.HostPortQuota = t.portQuota()
	s.HostSessionQuota = t.hostSessions
}
