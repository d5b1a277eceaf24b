package udpunder

import (
	"net/netip"
	"sync"
	"time"
)

// table maps a B4's IPv6 address to the UDP endpoint its datagrams come
// from. Lookups happen on every packet sent and learning on every packet
// received, so a refresh that changes nothing only stores a timestamp.
type table struct {
	mu        sync.Mutex
	m         map[[16]byte]*entry
	max       int
	expiry    time.Duration
	now       func() time.Time
	lastSweep time.Time

	learned, moved, expired, evicted uint64
}

type entry struct {
	ep   netip.AddrPort
	seen time.Time
}

func newTable(size int, expiry time.Duration, now func() time.Time) *table {
	return &table{m: make(map[[16]byte]*entry), max: size, expiry: expiry, now: now, lastSweep: now()}
}

func (t *table) learn(addr [16]byte, ep netip.AddrPort) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.m[addr]; ok {
		if e.ep != ep {
			e.ep = ep
			t.moved++
		}
		e.seen = now
		return
	}
	if now.Sub(t.lastSweep) >= t.expiry/4 || len(t.m) >= t.max {
		t.sweep(now)
	}
	if len(t.m) >= t.max {
		t.evictOldest()
	}
	t.m[addr] = &entry{ep: ep, seen: now}
	t.learned++
}

func (t *table) lookup(addr [16]byte) (netip.AddrPort, bool) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[addr]
	if !ok {
		return netip.AddrPort{}, false
	}
	if now.Sub(e.seen) >= t.expiry {
		delete(t.m, addr)
		t.expired++
		return netip.AddrPort{}, false
	}
	return e.ep, true
}

// sweep removes expired entries; learn calls it every quarter expiry, and
// when the table is full.
func (t *table) sweep(now time.Time) {
	t.lastSweep = now
	for k, e := range t.m {
		if now.Sub(e.seen) >= t.expiry {
			delete(t.m, k)
			t.expired++
		}
	}
}

// evictOldest removes the least recently seen entry. It scans the table,
// which happens only when the table is full of live entries.
func (t *table) evictOldest() {
	var oldest [16]byte
	var when time.Time
	first := true
	for k, e := range t.m {
		if first || e.seen.Before(when) {
			oldest, when, first = k, e.seen, false
		}
	}
	if !first {
		delete(t.m, oldest)
		t.evicted++
	}
}

func (t *table) stats(s *Stats) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s.Learned, s.Moved, s.Expired, s.Evicted = t.learned, t.moved, t.expired, t.evicted
	s.Endpoints = len(t.m)
}
