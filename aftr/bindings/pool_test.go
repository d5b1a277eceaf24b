package bindings

import (
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/portset"
)

func newPool(t testing.TB, c *clock, ports int, prefixes ...string) (*Table, *Pool) {
	t.Helper()
	tb := New(Config{Now: c.Now})
	cfg := PoolConfig{PortsPerB4: ports, BR: br1}
	for _, p := range prefixes {
		cfg.Prefixes = append(cfg.Prefixes, netip.MustParsePrefix(p))
	}
	p, err := NewPool(tb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tb, p
}

var asMuch = Request{Size: 65535, Lifetime: time.Hour}

func rng(t testing.TB, b Binding) portset.Range {
	t.Helper()
	r, ok := b.PSID.Contiguous()
	if !ok {
		t.Fatalf("%v is not contiguous", b)
	}
	return r
}

// RFC 7596 §5.1 and RFC 7597 §5.1: every B4 gets a contiguous aligned block
// (a = 0), disjoint from every other B4's, several B4s sharing one address
// with the same k; downstream lookups and upstream checks agree (RFC 7596 §6.2).
func TestPoolDisjoint(t *testing.T) {
	c := newClock()
	tb, p := newPool(t, c, 1024, "192.0.2.0/24", "203.0.113.0/28")
	type key struct {
		ip   netip.Addr
		psid uint16
	}
	seen := map[key]netip.Addr{}
	perAddr := map[netip.Addr]int{}
	const n = 63*256 + 63*16
	for i := range n {
		b, err := p.Allocate(b4(i), asMuch)
		if err != nil {
			t.Fatalf("B4 %d: %v", i, err)
		}
		r := rng(t, b)
		if r.Size != 1024 || r.First%1024 != 0 || b.PSID.Length != 6 || b.BR != br1 || b.Static {
			t.Fatalf("B4 %d: %v %v", i, b, r)
		}
		k := key{b.IPv4, b.PSID.ID}
		if o, dup := seen[k]; dup {
			t.Fatalf("%v given to %v and %v", k, o, b.B4)
		}
		seen[k] = b.B4
		perAddr[b.IPv4]++
	}
	if len(perAddr) != 256+16 {
		t.Fatalf("%d addresses used", len(perAddr))
	}
	for a, m := range perAddr {
		if m != 63 {
			t.Errorf("%v holds %d B4s, want 63", a, m)
		}
	}
	// Dense packing: the first 63 B4s share the first address.
	if b := tb.ByB4(b4(62)); len(b) != 1 || b[0].IPv4 != netip.MustParseAddr("192.0.2.0") {
		t.Errorf("B4 62 on %v", b)
	}
	for k, who := range seen {
		ip := k.ip.As4()
		for _, port := range []uint16{k.psid * 1024, k.psid*1024 + 1023} {
			if got, _, ok := tb.Lookup(ip, port); !ok || got != who {
				t.Fatalf("Lookup(%v, %d) = %v %v, want %v", k.ip, port, got, ok, who)
			}
			if !tb.Check(who, ip, port) || tb.Check(b4(n+1), ip, port) {
				t.Fatalf("Check(%v, %d)", k.ip, port)
			}
		}
	}
	if _, err := p.Allocate(b4(n), asMuch); !errors.Is(err, ErrNoResources) {
		t.Fatalf("full pool: %v", err)
	}
	if tb.Len() != n {
		t.Fatalf("Len = %d", tb.Len())
	}
}

// RFC 7596 §5.1 (RECOMMENDED) and RFC 6346: no block holding ports 0-1023
// is ever handed out, whatever the block size; an exhausted pool answers
// ErrNoResources (RFC 6887 §7.4 NO_RESOURCES).
func TestPoolNoSystemPorts(t *testing.T) {
	for size := 2; size <= 32768; size *= 2 {
		c := newClock()
		_, p := newPool(t, c, size, "198.51.100.7/32")
		want := (65536 - max(1024, size)) / size
		for i := range want {
			b, err := p.Allocate(b4(i), asMuch)
			if err != nil {
				t.Fatalf("size %d, B4 %d: %v", size, i, err)
			}
			if r := rng(t, b); r.First < 1024 || int(r.Size) != size {
				t.Fatalf("size %d: got %v", size, r)
			}
		}
		if _, err := p.Allocate(b4(want), asMuch); !errors.Is(err, ErrNoResources) {
			t.Fatalf("size %d: after %d blocks: %v", size, want, err)
		}
	}
}

// RFC 7753 §4: the server maps at most the requested number of ports, as
// many as it will; block size = min(PortsPerB4, largest power of two ≤ Size).
// Blocks of different sizes go to different addresses (RFC 7597 §5.1).
func TestPoolSizes(t *testing.T) {
	c := newClock()
	_, p := newPool(t, c, 4096, "192.0.2.0/30")
	cases := []struct{ ask, want int }{{65535, 4096}, {4096, 4096}, {5000, 4096}, {4095, 2048}, {1000, 512}, {2, 2}}
	addrOf := map[int]netip.Addr{}
	for i, cs := range cases {
		b, err := p.Allocate(b4(i), Request{Size: cs.ask, Lifetime: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if got := b.Ports().Len(); got != cs.want {
			t.Errorf("asked %d: got %d ports", cs.ask, got)
		}
		if a, ok := addrOf[cs.want]; ok && a != b.IPv4 {
			t.Errorf("%d-port blocks on %v and %v", cs.want, a, b.IPv4)
		}
		addrOf[cs.want] = b.IPv4
	}
	if len(addrOf) != 4 {
		t.Errorf("sizes on %d addresses: %v", len(addrOf), addrOf)
	}
	if _, err := p.Allocate(b4(99), Request{Size: 1, Lifetime: time.Hour}); !errors.Is(err, ErrNoResources) {
		t.Errorf("1 port: %v", err)
	}
	// All four addresses have a k now: a fifth size finds none.
	if _, err := p.Allocate(b4(98), Request{Size: 256, Lifetime: time.Hour}); !errors.Is(err, ErrNoResources) {
		t.Errorf("fifth size: %v", err)
	}
}

// RFC 6887 §11.3 and §15: a request for an existing mapping renews it and
// returns the same address and ports whatever is suggested; the lifetime is
// clamped to [120 s, 24 h].
func TestPoolRenewalAndLifetime(t *testing.T) {
	c := newClock()
	tb, p := newPool(t, c, 2048, "192.0.2.0/24")
	b, err := p.Allocate(b4(1), Request{Size: 65535, Lifetime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Expires.Sub(c.Now()); got != 120*time.Second {
		t.Errorf("lifetime 1 s granted as %v", got)
	}
	c.Advance(time.Minute)
	r, err := p.Allocate(b4(1), Request{Size: 512, SuggestedIPv4: netip.MustParseAddr("192.0.2.99"), SuggestedFirstPort: 8192, Lifetime: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if r.IPv4 != b.IPv4 || r.PSID != b.PSID {
		t.Fatalf("renewal moved %v to %v", b, r)
	}
	if got := r.Expires.Sub(c.Now()); got != 24*time.Hour {
		t.Errorf("lifetime 48 h granted as %v", got)
	}
	if got := tb.ByB4(b4(1)); len(got) != 1 || !got[0].Expires.Equal(r.Expires) {
		t.Errorf("table holds %v", got)
	}
	if tb.Len() != 1 {
		t.Errorf("Len = %d", tb.Len())
	}
	if _, err := p.Allocate(b4(1), Request{Size: 65535}); !errors.Is(err, ErrInvalid) {
		t.Errorf("lifetime 0: %v", err)
	}
}

// RFC 6887 §11.3: the server SHOULD honour the suggested address and port
// when it can; a suggestion it cannot honour is only a hint.
func TestPoolSuggestion(t *testing.T) {
	c := newClock()
	_, p := newPool(t, c, 4096, "198.51.100.0/24")
	sugg := func(ip string, port uint16) Request {
		return Request{Size: 65535, SuggestedIPv4: netip.MustParseAddr(ip), SuggestedFirstPort: port, Lifetime: time.Hour}
	}
	b, err := p.Allocate(b4(1), sugg("198.51.100.77", 40960))
	if err != nil {
		t.Fatal(err)
	}
	if b.IPv4.String() != "198.51.100.77" || rng(t, b).First != 40960 {
		t.Fatalf("exact suggestion: %v", b)
	}
	// A port inside a block suggests that block; IPv4-mapped is accepted.
	b, err = p.Allocate(b4(2), sugg("::ffff:198.51.100.77", 50000))
	if err != nil {
		t.Fatal(err)
	}
	if b.IPv4.String() != "198.51.100.77" || rng(t, b).First != 49152 {
		t.Fatalf("port inside block: %v", b)
	}
	// Taken block: same address, another block.
	b, err = p.Allocate(b4(3), sugg("198.51.100.77", 40960))
	if err != nil {
		t.Fatal(err)
	}
	if b.IPv4.String() != "198.51.100.77" || rng(t, b).First == 40960 {
		t.Fatalf("taken suggestion: %v", b)
	}
	// System ports, an address outside the pool, garbage: hints ignored.
	for i, r := range []Request{sugg("198.51.100.78", 80), sugg("192.0.2.1", 8192), sugg("0.0.0.0", 8192), sugg("::", 0), sugg("2001:db8::1", 8192)} {
		b, err := p.Allocate(b4(10+i), r)
		if err != nil {
			t.Fatal(err)
		}
		if rng(t, b).First < 1024 || b.IPv4.String() == "192.0.2.1" {
			t.Fatalf("request %d: %v", i, b)
		}
	}
}

// RFC 6887 §15: a released or expired port SHOULD NOT go to another client
// for the hold-down time; the same client may reclaim it meanwhile.
func TestPoolHoldDown(t *testing.T) {
	c := newClock()
	tb, p := newPool(t, c, 16384, "192.0.2.5/32") // three blocks: 16384, 32768, 49152
	a, err := p.Allocate(b4(1), asMuch)
	if err != nil {
		t.Fatal(err)
	}
	old := Request{Size: 65535, SuggestedIPv4: a.IPv4, SuggestedFirstPort: rng(t, a).First, Lifetime: time.Hour}
	if ok, err := p.Release(b4(1)); !ok || err != nil {
		t.Fatalf("Release = %v, %v", ok, err)
	}
	if ok, err := p.Release(b4(1)); ok || err != nil {
		t.Fatalf("second Release = %v, %v", ok, err)
	}
	if _, _, ok := tb.Lookup(a.IPv4.As4(), rng(t, a).First); ok || tb.Len() != 0 {
		t.Fatal("released binding still routes")
	}
	// Others do not get the held block, even when they suggest it.
	for i := 2; i <= 3; i++ {
		b, err := p.Allocate(b4(i), old)
		if err != nil {
			t.Fatal(err)
		}
		if b.PSID == a.PSID {
			t.Fatalf("held block given to B4 %d", i)
		}
	}
	if _, err := p.Allocate(b4(4), old); !errors.Is(err, ErrNoResources) {
		t.Fatalf("only the held block left: %v", err)
	}
	// The owner reclaims it within the hold-down, with or without suggestion.
	c.Advance(time.Minute)
	r, err := p.Allocate(b4(1), asMuch)
	if err != nil || r.PSID != a.PSID {
		t.Fatalf("reclaim: %v %v", r, err)
	}
	// After the hold-down the block goes to anyone, without an Expire call.
	if _, err := p.Release(b4(1)); err != nil {
		t.Fatal(err)
	}
	c.Advance(2*time.Minute - time.Nanosecond)
	if _, err := p.Allocate(b4(4), old); !errors.Is(err, ErrNoResources) {
		t.Fatalf("before hold-down end: %v", err)
	}
	c.Advance(time.Nanosecond)
	r, err = p.Allocate(b4(4), old)
	if err != nil || r.PSID != a.PSID {
		t.Fatalf("after hold-down: %v %v", r, err)
	}
	if len(tb.ByB4(b4(1))) != 0 {
		t.Fatal("old owner still indexed")
	}
}

// RFC 7596 §6.1 (binding lifetime = allocation lifetime) and RFC 6887 §15:
// an expired binding stops routing at once, Expire moves it to hold-down,
// its owner gets it back on a late renewal.
func TestPoolExpiry(t *testing.T) {
	c := newClock()
	tb, p := newPool(t, c, 32768, "203.0.113.1/32") // one block: 32768-65535
	a, err := p.Allocate(b4(1), Request{Size: 65535, Lifetime: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ip := a.IPv4.As4()
	c.Advance(10*time.Minute - time.Second)
	if _, _, ok := tb.Lookup(ip, 40000); !ok || p.Expire() != 0 {
		t.Fatal("binding gone before its lifetime")
	}
	c.Advance(time.Second)
	if _, _, ok := tb.Lookup(ip, 40000); ok || tb.Check(b4(1), ip, 40000) {
		t.Fatal("expired binding still routes")
	}
	if n := p.Expire(); n != 1 || tb.Len() != 0 {
		t.Fatalf("Expire = %d, Len = %d", n, tb.Len())
	}
	if _, err := p.Allocate(b4(2), asMuch); !errors.Is(err, ErrNoResources) {
		t.Fatalf("held block: %v", err)
	}
	// A renewal that comes late (after expiry) gets the same block back.
	r, err := p.Allocate(b4(1), asMuch)
	if err != nil || r.PSID != a.PSID {
		t.Fatalf("late renewal: %v %v", r, err)
	}
	// Expired and past hold-down, without Expire in between: free.
	c.Advance(time.Hour + 2*time.Minute)
	if b, err := p.Allocate(b4(2), asMuch); err != nil || b.PSID != a.PSID {
		t.Fatalf("after hold-down: %v %v", b, err)
	}
	if _, err := p.Release(b4(2)); err != nil {
		t.Fatal(err)
	}
	// After the hold-down the block stays reserved for B4 2 (reserve.go),
	// then the address is dropped.
	c.Advance(2 * time.Minute)
	p.Expire()
	if s := tb.r.get(u32(ip)); s == nil || p.Reservations().Reserved != 1 {
		t.Fatalf("no reservation after the hold-down: %+v", p.Reservations())
	}
	c.Advance(time.Hour)
	p.Expire()
	if s := tb.r.get(u32(ip)); s != nil {
		t.Fatalf("empty address kept: %+v", s)
	}
}

// RFC 7597 §5.1: a and k are per address, so static bindings with other
// parameters take their address out of the pool; static bindings with the
// pool's parameters share it. RFC 6887 §11.3: a static mapping is returned
// as is, and deleting it is NOT_AUTHORIZED.
func TestPoolAndStatic(t *testing.T) {
	c := newClock()
	tb := New(Config{Now: c.Now})
	for _, b := range []Binding{
		static(b4(100), "192.0.2.1", 6, 8, 0x34), // other parameters
		static(b4(101), "192.0.2.2", 0, 2, 1),    // pool parameters (k=2: 16384 ports)
	} {
		if err := tb.AddStatic(b); err != nil {
			t.Fatal(err)
		}
	}
	p, err := NewPool(tb, PoolConfig{Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("192.0.2.2/32")}, PortsPerB4: 16384, BR: br1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		b, err := p.Allocate(b4(i), asMuch)
		if err != nil {
			t.Fatal(err)
		}
		if b.IPv4.String() != "192.0.2.2" || b.PSID.ID == 1 || b.PSID.ID == 0 {
			t.Fatalf("allocated %v", b)
		}
	}
	if _, err := p.Allocate(b4(3), asMuch); !errors.Is(err, ErrNoResources) {
		t.Fatalf("pool should be full: %v", err)
	}
	// A suggestion into the foreign-parameter address is ignored too.
	if _, err := p.Allocate(b4(3), Request{Size: 65535, SuggestedIPv4: netip.MustParseAddr("192.0.2.1"), SuggestedFirstPort: 16384, Lifetime: time.Hour}); !errors.Is(err, ErrNoResources) {
		t.Fatalf("suggestion into static address: %v", err)
	}
	s, err := p.Allocate(b4(100), asMuch)
	if err != nil || !s.Static || s.PSID.Offset != 6 || !s.Expires.IsZero() {
		t.Fatalf("static B4 got %v %v", s, err)
	}
	if ok, err := p.Release(b4(100)); ok || !errors.Is(err, ErrStatic) {
		t.Fatalf("Release(static) = %v %v", ok, err)
	}
	if _, err := NewPool(tb, PoolConfig{Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, PortsPerB4: 1024, BR: br1}); err == nil {
		t.Fatal("second pool on one table accepted")
	}
}

// RFC 6887 §11.3: per-subscriber quotas are RECOMMENDED; USER_EX_QUOTA.
func TestPoolQuota(t *testing.T) {
	c := newClock()
	tb := New(Config{Now: c.Now})
	p, err := NewPool(tb, PoolConfig{Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, PortsPerB4: 4096, BR: br1, QuotaPerPrefix: 2})
	if err != nil {
		t.Fatal(err)
	}
	sub := func(i int) netip.Addr { return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 7, 15: byte(i)}) }
	for i := range 2 {
		if _, err := p.Allocate(sub(i), asMuch); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Allocate(sub(2), asMuch); !errors.Is(err, ErrQuota) {
		t.Fatalf("third B4 in the /64: %v", err)
	}
	if _, err := p.Allocate(b4(1), asMuch); err != nil {
		t.Fatalf("another /64: %v", err)
	}
	// Renewal is not a new block; a released block counts until its hold-down ends.
	if _, err := p.Allocate(sub(0), asMuch); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Release(sub(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Allocate(sub(2), asMuch); !errors.Is(err, ErrQuota) {
		t.Fatalf("during hold-down: %v", err)
	}
	if _, err := p.Allocate(sub(0), asMuch); err != nil {
		t.Fatalf("reclaim within quota: %v", err)
	}
	tb.Remove(sub(1))
	if _, err := p.Allocate(sub(2), asMuch); err != nil {
		t.Fatalf("after Remove: %v", err)
	}
}

// Bad configuration and bad requests are errors, never panics, and change
// nothing (DESIGN.md "Properties that must hold").
func TestPoolInvalid(t *testing.T) {
	pf := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	bad := []PoolConfig{
		{Prefixes: pf, PortsPerB4: 0, BR: br1},
		{Prefixes: pf, PortsPerB4: 1, BR: br1},
		{Prefixes: pf, PortsPerB4: 3000, BR: br1},
		{Prefixes: pf, PortsPerB4: 65536, BR: br1},
		{Prefixes: pf, PortsPerB4: 1024},
		{PortsPerB4: 1024, BR: br1},
		{Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8::/64")}, PortsPerB4: 1024, BR: br1},
		{Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")}, PortsPerB4: 1024, BR: br1},
		{Prefixes: []netip.Prefix{pf[0], netip.MustParsePrefix("192.0.2.128/25")}, PortsPerB4: 1024, BR: br1},
		{Prefixes: pf, PortsPerB4: 1024, MinPortsPerB4: 2048, BR: br1},
		{Prefixes: pf, PortsPerB4: 1024, MinLifetime: time.Hour, MaxLifetime: time.Minute, BR: br1},
		{Prefixes: pf, PortsPerB4: 1024, QuotaPerPrefix: -1, BR: br1},
		{Prefixes: pf, PortsPerB4: 1024, QuotaPerPrefix: 1, QuotaPrefixLen: 129, BR: br1},
	}
	for i, cfg := range bad {
		if _, err := NewPool(New(Config{}), cfg); !errors.Is(err, ErrInvalid) {
			t.Errorf("config %d: %v", i, err)
		}
	}
	if _, err := NewPool(nil, PoolConfig{}); err == nil {
		t.Error("nil table accepted")
	}
	c := newClock()
	tb, p := newPool(t, c, 1024, "192.0.2.0/24")
	if _, err := p.Allocate(b4(1), asMuch); err != nil {
		t.Fatal(err)
	}
	for i, r := range []Request{{Size: 0, Lifetime: time.Hour}, {Size: 65536, Lifetime: time.Hour}, {Size: -1, Lifetime: time.Hour}, {Size: 100, Lifetime: -time.Second}} {
		if _, err := p.Allocate(b4(2), r); !errors.Is(err, ErrInvalid) {
			t.Errorf("request %d: %v", i, err)
		}
	}
	for _, a := range []netip.Addr{{}, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("ff02::1"), netip.MustParseAddr("::1")} {
		if _, err := p.Allocate(a, asMuch); !errors.Is(err, ErrInvalid) {
			t.Errorf("B4 %v: %v", a, err)
		}
		if _, err := p.Release(a); !errors.Is(err, ErrInvalid) {
			t.Errorf("Release %v: %v", a, err)
		}
	}
	if tb.Len() != 1 {
		t.Fatalf("Len = %d", tb.Len())
	}
}

// Lookups run without locks while the pool allocates, renews, releases and
// expires (run with -race).
func TestConcurrentLookupDuringAllocate(t *testing.T) {
	c := newClock()
	tb, p := newPool(t, c, 2048, "192.0.2.0/28")
	if err := tb.AddStatic(static(b4(1000), "203.0.113.1", 6, 8, 0x34)); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var hits atomic.Int64
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				ip := [4]byte{192, 0, 2, byte(i % 16)}
				port := uint16(i*2048 + g)
				if who, br, ok := tb.Lookup(ip, port); ok {
					hits.Add(1)
					if br != br1 || !who.Is6() {
						t.Errorf("torn read: %v %v", who, br)
						return
					}
					tb.Check(who, ip, port)
				}
				if who, _, ok := tb.Lookup([4]byte{203, 0, 113, 1}, 1232); !ok || who != b4(1000) {
					t.Error("static binding lost")
					return
				}
			}
		}()
	}
	for round := range 20 {
		for i := range 200 {
			if _, err := p.Allocate(b4(i), asMuch); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 200 {
			if i%3 == round%3 {
				p.Release(b4(i))
			}
		}
		c.Advance(time.Minute)
		p.Expire()
		tb.Snapshot()
	}
	stop.Store(true)
	wg.Wait()
	if hits.Load() == 0 {
		t.Log("no lookup hit a binding")
	}
}
