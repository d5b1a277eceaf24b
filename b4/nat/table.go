package nat

import (
	"math/rand/v2"
	"time"
)

// Map keys are packed into integers, one map per protocol, so that lookups
// take the runtime's fast integer-key path and never allocate.

// intKey is an internal endpoint.
func intKey(addr uint32, port uint16) uint64 { return uint64(addr)<<16 | uint64(port) }

// sessKey is a remote endpoint (remote port 0 for ICMP) of external port ext.
func sessKey(raddr uint32, ext, rport uint16) uint64 {
	return uint64(raddr)<<32 | uint64(ext)<<16 | uint64(rport)
}

// mapping binds an internal endpoint to an external port (endpoint-
// independent). Its sessions form a doubly linked list.
type mapping struct {
	intAddr       uint32
	intPort       uint16
	ext           uint16
	pi            uint8
	explicit      bool
	explicitUntil int64
	expires       int64 // latest expiry among its sessions
	head          *session
	// filters restrict an explicit mapping to these remote peers while its
	// explicit lifetime runs (RFC 6887 §13.3); nil admits every peer.
	filters []Filter
}

func (m *mapping) alive(now int64) bool {
	return m.expires > now || (m.explicit && m.explicitUntil > now)
}

// recompute sets expires to the latest session expiry, after a session's
// timer was shortened.
func (m *mapping) recompute() {
	var e int64
	if m.head != nil {
		e = m.head.expires
	}
	for s := m.head; s != nil; s = s.next {
		e = max(e, s.expires)
	}
	m.expires = e
}

// session is one remote endpoint of a mapping: the filter state and, for
// TCP, the connection state that picks the timeout.
type session struct {
	key        uint64 // sessKey
	pi         uint8
	m          *mapping
	prev, next *session
	expires    int64
	hold       int64 // a PCP PEER lifetime: touch never sets expires below it
	tcp        uint8 // tcpSeen* bits
}

const (
	tcpSynOut = 1 << iota
	tcpSynIn
	tcpFinOut
	tcpFinIn
	tcpRstSeen
	tcpBothSyn = tcpSynOut | tcpSynIn
	tcpBothFin = tcpFinOut | tcpFinIn
)

// touch refreshes s for a packet in direction out with TCP flags (RFC 4787
// REQ-6, RFC 5382 REQ-5).
func (t *Table) touch(s *session, out bool, flags uint8, now int64) {
	to := t.timeout[s.pi]
	if s.pi == iTCP {
		st := s.tcp
		if flags&tcpSYN != 0 && flags&tcpRST == 0 && (st&tcpRstSeen != 0 || st&tcpBothFin == tcpBothFin) {
			st = 0 // a new connection on a closed session's tuple
		}
		if flags&tcpRST != 0 {
			st |= tcpRstSeen
		}
		if flags&tcpSYN != 0 {
			st |= pick(out, tcpSynOut, tcpSynIn)
		}
		if flags&tcpFIN != 0 {
			st |= pick(out, tcpFinOut, tcpFinIn)
		}
		s.tcp = st
		if st&tcpBothSyn == tcpBothSyn && st&tcpBothFin != tcpBothFin && st&tcpRstSeen == 0 {
			to = t.tcpEst
		}
	}
	old := s.expires
	s.expires = max(now+to, s.hold)
	m := s.m
	switch {
	case s.expires >= m.expires:
		m.expires = s.expires
	case old == m.expires:
		m.recompute() // this session held the mapping's expiry and shrank
	}
}

func pick(out bool, a, b uint8) uint8 {
	if out {
		return a
	}
	return b
}

// outSession finds or creates the mapping of internal endpoint iaddr:iport
// and its session with remote raddr:rport, refreshes it and returns the
// external port.
func (t *Table) outSession(pi int, iaddr uint32, iport uint16, raddr uint32, rport uint16, flags uint8, now int64) (uint16, error) {
	m := t.byInt[pi][intKey(iaddr, iport)]
	if m != nil && !m.alive(now) {
		t.removeMapping(m)
		m = nil
	}
	var s *session
	if m != nil {
		s = t.sessions[pi][sessKey(raddr, m.ext, rport)]
	}
	if s == nil && !t.admitSession(iaddr, now) {
		return 0, ErrHostQuota
	}
	if s == nil && t.nsessAll >= t.maxSessions {
		return 0, ErrTooManySessions
	}
	if m == nil && !t.admitMapping(pi, iaddr, now) {
		return 0, ErrHostQuota
	}
	if m == nil {
		ext, ok := t.allocPort(pi, iport, 0, now)
		if !ok {
			return 0, ErrPortsExhausted
		}
		m = t.newMapping(pi, iaddr, iport, ext, now)
	}
	if s == nil {
		s = t.newSession(m, raddr, rport, now)
	} else if s.expires <= now {
		s.tcp = 0
	}
	t.touch(s, true, flags, now)
	return m.ext, nil
}

// inSession applies the filter to a packet from raddr:rport to external port
// ext, finds or creates its session, refreshes it and returns the internal
// endpoint.
func (t *Table) inSession(pi int, ext uint16, raddr uint32, rport uint16, flags uint8, now int64) (uint32, uint16, error) {
	m := t.byExt[pi][ext]
	if m == nil {
		return 0, 0, ErrNoMapping
	}
	if !m.alive(now) {
		t.removeMapping(m)
		return 0, 0, ErrNoMapping
	}
	s := t.sessions[pi][sessKey(raddr, ext, rport)]
	if s == nil || s.expires <= now {
		if !t.admits(m, raddr, rport, now) {
			return 0, 0, ErrFiltered
		}
		if s == nil {
			if !t.admitSession(m.intAddr, now) {
				return 0, 0, ErrHostQuota
			}
			if t.nsessAll >= t.maxSessions {
				return 0, 0, ErrTooManySessions
			}
			s = t.newSession(m, raddr, rport, now)
		} else {
			s.tcp = 0
		}
	}
	t.touch(s, false, flags, now)
	return m.intAddr, m.intPort, nil
}

// admits reports whether the filter lets a packet from raddr:rport through
// m when the exact remote endpoint has no live session (RFC 4787 §5). A live
// explicit mapping admits every peer, or only those of its PCP FILTERs.
func (t *Table) admits(m *mapping, raddr uint32, rport uint16, now int64) bool {
	if m.explicit && m.explicitUntil > now {
		return m.filters == nil || admitsFilters(m.filters, raddr, rport)
	}
	switch t.filtering {
	case EndpointIndependent:
		return true
	case AddressDependent:
		// Linear in the mapping's sessions; only the first packet from a
		// new remote port pays it.
		for s := m.head; s != nil; s = s.next {
			if uint32(s.key>>32) == raddr && s.expires > now {
				return true
			}
		}
	}
	return false
}

// sessionFor returns the live mapping with external port ext and the live
// session of remote raddr:rport, for an ICMP error quoting a packet between
// them. Nothing is refreshed (RFC 4787 REQ-12, RFC 5508 REQ-6).
func (t *Table) sessionFor(pi int, ext uint16, raddr uint32, rport uint16, now int64) (*mapping, error) {
	m := t.byExt[pi][ext]
	if m == nil || !m.alive(now) {
		return nil, ErrNoMapping
	}
	s := t.sessions[pi][sessKey(raddr, ext, rport)]
	if s == nil || s.expires <= now {
		return nil, ErrNoMapping
	}
	return m, nil
}

// allocPort picks a free external port for protocol pi: want1 or want2 when
// in the set and free (port preservation, RFC 4787 REQ-3 MAY), else a linear
// probe from a random index (RFC 6056 spirit), preferring want1's parity
// (RFC 4787 REQ-4). Dead mappings met on the way are reclaimed.
//
// With several sets (docs/port-sets.md) the first set with a free port is
// probed, so the sets the B4 added under load are the ones that fall idle.
func (t *Table) allocPort(pi int, want1, want2 uint16, now int64) (uint16, bool) {
	if t.nmap[pi] >= t.nports && !t.reap(pi, now) {
		t.c.allocFail.Add(1)
		return 0, false
	}
	for _, w := range [2]uint16{want1, want2} {
		if w != 0 && t.contains(w) && t.portFree(pi, w, now) {
			return w, true
		}
	}
	for i := range t.sets {
		if p, ok := t.probe(&t.sets[i], pi, want1, now); ok {
			return p, true
		}
	}
	t.c.allocFail.Add(1)
	return 0, false
}

// probe looks for a free port in one set, linearly from a random index,
// preferring want's parity.
func (t *Table) probe(s *natSet, pi int, want uint16, now int64) (uint16, bool) {
	n := s.n
	if s.used[pi] >= n {
		return 0, false
	}
	start := rand.IntN(n)
	alt := -1
	for i := range n {
		j := start + i
		if j >= n {
			j -= n
		}
		p := s.ports.Nth(j)
		if p == 0 || !t.portFree(pi, p, now) {
			continue
		}
		if p&1 == want&1 {
			return p, true
		}
		if alt >= 0 {
			break // a second free port of the other parity: take the first
		}
		alt = int(p)
	}
	if alt >= 0 {
		return uint16(alt), true
	}
	return 0, false
}

// portFree reports whether ext is unused for pi, removing a dead mapping
// that still holds it.
func (t *Table) portFree(pi int, ext uint16, now int64) bool {
	m := t.byExt[pi][ext]
	if m == nil {
		return true
	}
	if m.alive(now) {
		return false
	}
	t.removeMapping(m)
	return true
}

// reapInterval rate-limits the whole-table sweep a full port set triggers,
// so that a LAN host opening flows against a full set cannot make every
// packet a table walk.
const reapInterval = int64(time.Second)

// reap removes the dead mappings of protocol pi and reports whether a port
// became free.
func (t *Table) reap(pi int, now int64) bool {
	if now-t.lastReap[pi] < reapInterval && t.lastReap[pi] != 0 {
		return false
	}
	t.lastReap[pi] = now
	for _, m := range t.byInt[pi] {
		if !m.alive(now) {
			t.removeMapping(m)
		}
	}
	return t.nmap[pi] < t.nports
}

func (t *Table) newMapping(pi int, iaddr uint32, iport, ext uint16, now int64) *mapping {
	var m *mapping
	if n := len(t.freeM); n > 0 {
		m, t.freeM = t.freeM[n-1], t.freeM[:n-1]
	} else {
		m = new(mapping)
	}
	*m = mapping{intAddr: iaddr, intPort: iport, ext: ext, pi: uint8(pi), expires: now}
	t.byInt[pi][intKey(iaddr, iport)] = m
	t.byExt[pi][ext] = m
	t.nmap[pi]++
	t.used(ext, pi, +1)
	t.hostMapping(iaddr, uint8(pi), +1)
	return m
}

func (t *Table) newSession(m *mapping, raddr uint32, rport uint16, now int64) *session {
	var s *session
	if n := len(t.freeS); n > 0 {
		s, t.freeS = t.freeS[n-1], t.freeS[:n-1]
	} else {
		s = new(session)
	}
	*s = session{key: sessKey(raddr, m.ext, rport), pi: m.pi, m: m, next: m.head, expires: now}
	if m.head != nil {
		m.head.prev = s
	}
	m.head = s
	t.sessions[m.pi][s.key] = s
	t.nsess[m.pi]++
	t.nsessAll++
	t.hostSession(m.intAddr, +1)
	return s
}

// removeSession unlinks and frees s; the mapping stays (Expire or a lookup
// removes it when it is dead).
func (t *Table) removeSession(s *session) {
	m := s.m
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		m.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	}
	t.dropSession(s)
}

func (t *Table) dropSession(s *session) {
	delete(t.sessions[s.pi], s.key)
	t.nsess[s.pi]--
	t.nsessAll--
	t.hostSession(s.m.intAddr, -1)
	*s = session{}
	t.freeS = append(t.freeS, s)
}

func (t *Table) removeMapping(m *mapping) {
	for s := m.head; s != nil; {
		next := s.next
		t.dropSession(s)
		s = next
	}
	delete(t.byInt[m.pi], intKey(m.intAddr, m.intPort))
	delete(t.byExt[m.pi], m.ext)
	t.nmap[m.pi]--
	t.used(m.ext, int(m.pi), -1)
	t.hostMapping(m.intAddr, m.pi, -1)
	if m.explicit {
		t.nexplicit--
	}
	*m = mapping{}
	t.freeM = append(t.freeM, m)
}

func (t *Table) flushLocked() {
	for pi := range nProto {
		clear(t.byInt[pi])
		clear(t.byExt[pi])
		clear(t.sessions[pi])
	}
	t.nmap, t.nsess, t.lastReap = [nProto]int{}, [nProto]int{}, [nProto]int64{}
	t.nsessAll, t.nexplicit = 0, 0
	t.freeM, t.freeS = nil, nil
	clear(t.hosts)
	for i := range t.sets {
		t.sets[i].used = [nProto]int{}
	}
}
