package bindings

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// verify recomputes every derived structure of the table and its pool from
// the entries and compares.
func verify(t *testing.T, tb *Table) {
	t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	idx := map[b4Key]map[uint64]bool{}
	prefixes := map[b4Key]int32{}
	live, reserved := 0, 0
	tb.r.each(func(ip uint32, s *addrSet) {
		n, nLow, nLive := 0, 0, 0
		s.eachEntry(func(psid uint16, e *entry) {
			v := e.peek()
			if !v.present() {
				if uint32(psid) >= lowPSID(s.k) && uint32(psid) < s.hint {
					t.Errorf("%v psid %d free below hint %d", ip4(ip), psid, s.hint)
				}
				return
			}
			n++
			if s.a == 0 && uint32(psid) < lowPSID(s.k) {
				nLow++
			}
			if !v.held() {
				nLive++
			}
			if idx[v.owner()] == nil {
				idx[v.owner()] = map[uint64]bool{}
			}
			idx[v.owner()][uint64(ip)<<16|uint64(psid)] = true
			if v.reserved() {
				reserved++
				if !v.held() || v.static() {
					t.Errorf("%v psid %d: reserved but not a held dynamic slot", ip4(ip), psid)
				}
			}
			if !v.static() && !v.reserved() && tb.quotaBits > 0 {
				prefixes[prefixOf(v.owner(), tb.quotaBits)]++
			}
		})
		if n == 0 {
			t.Errorf("%v: empty set kept", ip4(ip))
		}
		if n != s.n || nLow != s.nLow || nLive != s.nLive {
			t.Errorf("%v: counts %d/%d/%d, recount %d/%d/%d", ip4(ip), s.n, s.nLow, s.nLive, n, nLow, nLive)
		}
		live += nLive
	})
	if reserved != tb.reserve.n || reserved > tb.reserve.max {
		t.Errorf("reserved %d (max %d), recount %d", tb.reserve.n, tb.reserve.max, reserved)
	}
	if live != tb.nLive {
		t.Errorf("nLive %d, recount %d", tb.nLive, live)
	}
	if len(idx) != len(tb.byB4) {
		t.Errorf("index has %d B4s, recount %d", len(tb.byB4), len(idx))
	}
	for k, want := range idx {
		got := tb.locs(k)
		if len(got) != len(want) {
			t.Errorf("%v: index %v, recount %v", k.addr(), got, want)
		}
		for _, l := range got {
			if !want[l] {
				t.Errorf("%v: index has stray %x", k.addr(), l)
			}
		}
	}
	if len(prefixes) != len(tb.perPrefix) {
		t.Errorf("quota counts %v, recount %v", tb.perPrefix, prefixes)
	}
	for k, n := range prefixes {
		if tb.perPrefix[k] != n {
			t.Errorf("quota count %v: %d, recount %d", k.addr(), tb.perPrefix[k], n)
		}
	}
	if p := tb.pool; p != nil {
		for i := range p.n {
			ip := p.ip(i)
			if j, ok := p.index(ip); !ok || j != i {
				t.Fatalf("pool index %d -> %v -> %d", i, ip4(ip), j)
			}
			s := tb.r.get(ip)
			if got := p.empty.w[i/64]>>(i%64)&1 == 1; got != (s == nil) {
				t.Errorf("%v: empty bit %v", ip4(ip), got)
			}
			for k := p.kBig; k <= p.kSmall; k++ {
				want := s != nil && s.a == 0 && s.k == k && s.free() > 0
				if got := p.partial[k].w[i/64]>>(i%64)&1 == 1; got != want {
					t.Errorf("%v: partial[%d] bit %v, want %v", ip4(ip), k, got, want)
				}
			}
		}
		for _, b := range []*bitmap{p.empty, p.partial[p.kBig], p.partial[p.kSmall]} {
			for w := 0; w < b.lo && w < len(b.w); w++ {
				if b.w[w] != 0 {
					t.Errorf("bitmap word %d set below cursor %d", w, b.lo)
				}
			}
		}
	}
}

// A random mix of every operation keeps the counts, the B4 index, the quota
// counts and the pool bitmaps equal to what the entries say, and never gives
// one port to two B4s (RFC 7596 §6.1, RFC 7597 §5.1) nor a system port to
// a dynamic one (RFC 7596 §5.1).
func TestRandomOperationsKeepInvariants(t *testing.T) {
	for seed := range uint64(8) {
		r := rand.New(rand.NewPCG(seed, 7))
		c := newClock()
		tb := New(Config{Now: c.Now})
		p, err := NewPool(tb, PoolConfig{
			Prefixes:       []netip.Prefix{netip.MustParsePrefix("192.0.2.0/30"), netip.MustParsePrefix("198.51.100.8/31")},
			PortsPerB4:     8192,
			MinPortsPerB4:  1024,
			HoldDown:       time.Minute,
			QuotaPerPrefix: 40,
			QuotaPrefixLen: 120,
			BR:             br1,
		})
		if err != nil {
			t.Fatal(err)
		}
		addrs := []string{"192.0.2.0", "192.0.2.1", "192.0.2.2", "192.0.2.3", "198.51.100.8", "198.51.100.9", "203.0.113.1"}
		for op := range 3000 {
			who := b4(r.IntN(300))
			switch x := r.IntN(100); {
			case x < 50:
				req := Request{Size: []int{65535, 8192, 4096, 2048, 1024, 1000, 3}[r.IntN(7)], Lifetime: time.Duration(r.IntN(600)) * time.Second}
				if r.IntN(2) == 0 {
					req.SuggestedIPv4 = netip.MustParseAddr(addrs[r.IntN(len(addrs))])
					req.SuggestedFirstPort = uint16(r.IntN(65536))
				}
				p.Allocate(who, req)
			case x < 65:
				p.Release(who)
			case x < 70:
				tb.Remove(who)
			case x < 75:
				a, k := uint8(r.IntN(7)), uint8(r.IntN(10))
				if a+k > 16 {
					a = 0
				}
				tb.AddStatic(static(who, addrs[r.IntN(len(addrs))], a, k, uint16(r.IntN(1<<k))))
			case x < 80:
				p.Expire()
			default:
				c.Advance(time.Duration(r.IntN(60)) * time.Second)
			}
			if op%100 == 0 {
				verify(t, tb)
				if t.Failed() {
					t.Fatalf("seed %d op %d", seed, op)
				}
			}
		}
		verify(t, tb)
		// No port of any address routes to two B4s: Snapshot sets are disjoint.
		owner := map[[2]uint32]netip.Addr{}
		for _, b := range tb.Snapshot() {
			ports := b.Ports()
			for i := range ports.Len() {
				k := [2]uint32{u32(b.IPv4.As4()), uint32(ports.Nth(i))}
				if o, ok := owner[k]; ok {
					t.Fatalf("seed %d: %v port %d owned by %v and %v", seed, b.IPv4, ports.Nth(i), o, b.B4)
				}
				owner[k] = b.B4
				if !b.Static && ports.Nth(i) < 1024 {
					t.Fatalf("seed %d: dynamic %v holds system port", seed, b)
				}
			}
		}
	}
}
