package bindings

import (
	"fmt"
	"net/netip"
	"time"
)

// Reservations keep a block for the B4 that last held it, so that a B4
// coming back (after its binding lapsed, after it deleted it on shutdown,
// or after an AFTR restart that replayed a journal) gets its previous
// address and port set, and a newcomer does not take it first and start a
// cascade in which every displaced B4 takes the next one's block
// (issue 11 item 4).
//
// A reservation is a slot in the table (flagHeld|flagReserved, exp = its
// end), so that it costs no memory the address does not already have and
// the pool's free-block bitmaps skip it. It is soft, unlike a hold-down
// (RFC 6887 §15): its owner reclaims it at any time; another B4 gets it
// when it suggests exactly that block (a B4 asking for its previous set gets
// it when no live binding holds it) or when nothing unreserved is left, the
// oldest reservation first. A queue in creation order serves that fallback
// and bounds the count (MaxReserved, the oldest evicted and counted).
type reservations struct {
	for_    int64    // ns a block stays reserved after its hold-down; 0: none
	max     int      // most reservations kept
	n       int      // reserved slots (kept by Table.account)
	q       []uint64 // locs in creation order; may hold stale ones
	head    int      // q[:head] consumed
	evicted uint64   // reservations dropped to respect max
}

// ReservationStats describes the pool's reservations.
type ReservationStats struct {
	Reserved int    // blocks reserved now
	Evicted  uint64 // reservations dropped, oldest first, to stay within MaxReserved
}

// Reservations returns the reservation counts.
func (p *Pool) Reservations() ReservationStats {
	p.t.mu.RLock()
	defer p.t.mu.RUnlock()
	return ReservationStats{Reserved: p.t.reserve.n, Evicted: p.t.reserve.evicted}
}

// Reserve keeps b's block (b.IPv4 and b.PSID, an a = 0 pool block) for b4
// until until: the journal replay calls it for the blocks it knew that are
// not live any more, so that their owners get them back after a restart. A
// block that is free is reserved; one b4 already holds (live, in hold-down
// or reserved) is left as is, a reservation extended to until; one held by
// another B4 is ErrConflict. An until already past is a no-op.
func (p *Pool) Reserve(b4 netip.Addr, b Binding, until time.Time) error {
	if b.B4.IsValid() && b.B4 != b4 {
		return fmt.Errorf("%w: Reserve for %v of a binding of %v", ErrInvalid, b4, b.B4)
	}
	b.B4, b.BR = b4, p.cfg.BR
	ip, err := validate(&b)
	if err != nil {
		return err
	}
	if b.PSID.Offset != 0 || b.PSID.Length < p.kBig || b.PSID.Length > p.kSmall || !p.contains(ip) || uint32(b.PSID.ID) < lowPSID(b.PSID.Length) {
		return fmt.Errorf("%w: %v is not a block of the pool", ErrInvalid, b)
	}
	now := p.now().UnixNano()
	end := until.UnixNano()
	if end <= now {
		return nil
	}
	t := p.t
	t.mu.Lock()
	defer t.mu.Unlock()
	s, err := t.ensureSet(ip, 0, b.PSID.Length)
	if err != nil {
		return err
	}
	key := keyOf(b4)
	v := s.slotAt(b.PSID.ID)
	switch {
	case !v.present():
	case v.static() || v.owner() != key:
		if !v.static() && v.held() && now >= v.exp {
			break // another's hold-down or reservation that has ended
		}
		return fmt.Errorf("%w: %v %v is held by %v", ErrConflict, b.IPv4, b.PSID, v.owner().addr())
	case v.reserved():
		if end > v.exp {
			v.exp = end
			t.setSlot(ip, s, b.PSID.ID, v)
		}
		return nil
	default:
		return nil // b4's live binding or hold-down
	}
	t.setSlot(ip, s, b.PSID.ID, slot{meta: flagPresent | flagHeld | flagReserved | uint32(p.br)<<16, hi: key.hi, lo: key.lo, exp: end})
	t.reserve.q = append(t.reserve.q, uint64(ip)<<16|uint64(b.PSID.ID))
	t.trimReserved()
	return nil
}

// reserveAfterHold turns a hold-down record whose time is up into a
// reservation for its owner, and reports whether it did (called under
// Table.mu by the sweep).
func (t *Table) reserveAfterHold(ip uint32, s *addrSet, psid uint16, v slot, now int64) bool {
	if v.reserved() || t.reserve.for_ <= 0 || t.pool == nil || !t.pool.contains(ip) {
		return false
	}
	v.meta |= flagReserved
	v.exp += t.reserve.for_
	if now >= v.exp {
		return false
	}
	t.setSlot(ip, s, psid, v)
	t.reserve.q = append(t.reserve.q, uint64(ip)<<16|uint64(psid))
	return true
}

// reservedAt reports whether loc is a reservation now.
func (t *Table) reservedAt(loc uint64) (*addrSet, slot, bool) {
	s := t.r.get(uint32(loc >> 16))
	if s == nil || uint32(uint16(loc)) >= s.size() {
		return nil, slot{}, false
	}
	v := s.slotAt(uint16(loc))
	return s, v, v.present() && v.reserved()
}

// trimReserved evicts the oldest reservations beyond the maximum and
// compacts the queue when stale entries dominate it (under Table.mu).
func (t *Table) trimReserved() {
	r := &t.reserve
	for r.n > r.max && r.head < len(r.q) {
		loc := r.q[r.head]
		r.head++
		if s, _, ok := t.reservedAt(loc); ok {
			t.setSlot(uint32(loc>>16), s, uint16(loc), slot{})
			r.evicted++
		}
	}
	if live := len(r.q) - r.head; r.head > len(r.q)/2 || live > 2*r.n+64 {
		q := r.q[:0]
		seen := make(map[uint64]struct{}, r.n)
		for _, loc := range r.q[r.head:] {
			if _, dup := seen[loc]; dup {
				continue
			}
			if _, _, ok := t.reservedAt(loc); ok {
				seen[loc] = struct{}{}
				q = append(q, loc)
			}
		}
		clear(r.q[len(q):])
		r.q, r.head = q, 0
	}
}

// takeReserved returns the oldest reservation on a pool address of PSID
// length k, for a request nothing unreserved can serve (under Table.mu).
func (p *Pool) takeReserved(k uint8) (uint32, *addrSet, uint16, bool) {
	r := &p.t.reserve
	for i := r.head; i < len(r.q); i++ {
		loc := r.q[i]
		s, _, ok := p.t.reservedAt(loc)
		if !ok {
			if i == r.head {
				r.head++ // stale at the front: drop it
			}
			continue
		}
		ip, psid := uint32(loc>>16), uint16(loc)
		if s.a == 0 && s.k == k && p.contains(ip) && uint32(psid) >= lowPSID(k) {
			return ip, s, psid, true
		}
	}
	return 0, nil, 0, false
}

// dropOtherReservations frees the reservations b4 holds besides loc, once
// it has a block again (under Table.mu).
func (t *Table) dropOtherReservations(key b4Key, loc uint64) {
	for _, l := range t.locs(key) {
		if l == loc {
			continue
		}
		if s, v, ok := t.reservedAt(l); ok && v.owner() == key {
			t.setSlot(uint32(l>>16), s, uint16(l), slot{})
		}
	}
}
