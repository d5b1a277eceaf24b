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

	claims map[claimKey]claim // WithBinding: bounded like m

	learned, moved, expired, evicted, bound uint64
}

type entry struct {
	ep   netip.AddrPort
	seen time.Time
	// bound: set by a handshake (WithBinding); only another moves ep.
	bound bool
}

type claimKey struct {
	addr [16]byte
	id   uint64
}

// claim is an endpoint that asked to bind an address and awaits the answer.
type claim struct {
	ep   netip.AddrPort
	when time.Time
}

// claimLife bounds how long a claim waits for its answer (a PCP server
// answers at once; the client retransmits after 3 s with a fresh claim).
const claimLife = 10 * time.Second

func newTable(size int, expiry time.Duration, now func() time.Time) *table {
	return &table{m: make(map[[16]byte]*entry), claims: make(map[claimKey]claim), max: size, expiry: expiry, now: now, lastSweep: now()}
}

// learnUnbound learns addr's endpoint from an ordinary datagram unless a
// handshake bound the address to another endpoint, and reports whether the
// datagram may be delivered.
func (t *table) learnUnbound(addr [16]byte, ep netip.AddrPort) bool {
	t.mu.Lock()
	e, ok := t.m[addr]
	if ok && e.bound && e.ep != ep && t.now().Sub(e.seen) < t.expiry {
		t.mu.Unlock()
		return false
	}
	t.mu.Unlock()
	t.learn(addr, ep)
	return true
}

// propose records ep's claim on addr, to be settled by the answer.
func (t *table) propose(addr [16]byte, id uint64, ep netip.AddrPort) {
	now := t.now()
	key := claimKey{addr, id}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.claims[key]; !ok && len(t.claims) >= t.max {
		for k, c := range t.claims {
			if now.Sub(c.when) >= claimLife {
				delete(t.claims, k)
			}
		}
		if len(t.claims) >= t.max {
			return // answered from the table, if at all
		}
	}
	t.claims[key] = claim{ep: ep, when: now}
	// An address nobody has bound is reachable at once, as without
	// WithBinding; a bound one keeps its endpoint until the answer.
	if e, ok := t.m[addr]; !ok || !e.bound || now.Sub(e.seen) >= t.expiry {
		t.learnLocked(addr, ep, now)
	}
}

// settle takes the answer to addr's claim: the claimant's endpoint, which
// a grant binds.
func (t *table) settle(addr [16]byte, id uint64, granted bool) (netip.AddrPort, bool) {
	now := t.now()
	key := claimKey{addr, id}
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.claims[key]
	delete(t.claims, key)
	if !ok || now.Sub(c.when) >= claimLife {
		return netip.AddrPort{}, false
	}
	if granted {
		t.learnLocked(addr, c.ep, now)
		t.m[addr].bound = true
		t.bound++
	}
	return c.ep, true
}

func (t *table) learn(addr [16]byte, ep netip.AddrPort) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.learnLocked(addr, ep, now)
}

func (t *table) learnLocked(addr [16]byte, ep netip.AddrPort, now time.Time) {
	if e, ok := t.m[addr]; ok && now.Sub(e.seen) >= t.expiry {
		// Expired but not yet swept: gone, binding and all. Re-pointed in
		// place, a bound entry would stay bound to whoever sent next and
		// shut out the B4 until its next handshake.
		delete(t.m, addr)
		t.expired++
	}
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

// evictOldest removes the least recently seen entry that no handshake
// bound, or the least recently seen of all when every entry is bound: else
// a sender inventing source addresses could push a bound B4 out of a full
// table and then learn its address afresh. It scans the table, which
// happens only when the table is full of live entries.
func (t *table) evictOldest() {
	var oldest [16]byte
	var when time.Time
	found, foundBound := false, false
	for k, e := range t.m {
		// An unbound entry beats a bound one; then the older wins.
		if !found || foundBound && !e.bound || foundBound == e.bound && e.seen.Before(when) {
			oldest, when, found, foundBound = k, e.seen, true, e.bound
		}
	}
	if found {
		delete(t.m, oldest)
		t.evicted++
	}
}

func (t *table) stats(s *Stats) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s.Learned, s.Moved, s.Expired, s.Evicted, s.Bound = t.learned, t.moved, t.expired, t.evicted, t.bound
	s.Endpoints = len(t.m)
}
