package bindings

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

func newSetsPool(t testing.TB, c *clock, maxSets int, prefixes ...string) (*Table, *Pool) {
	t.Helper()
	tb := New(Config{Now: c.Now})
	cfg := PoolConfig{PortsPerB4: 2048, BR: br1, MaxSetsPerB4: maxSets}
	for _, p := range prefixes {
		cfg.Prefixes = append(cfg.Prefixes, netip.MustParsePrefix(p))
	}
	p, err := NewPool(tb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tb, p
}

func setReq(set uint16) Request { return Request{Size: 2048, Lifetime: time.Hour, Set: set} }

// docs/port-sets.md: each set number is its own binding, on the B4's
// address (RFC 7753 §6.1), renewed on its own; the cap counts live sets and
// refuses one more with ErrSetLimit, never a renewal.
func TestPoolSeveralSets(t *testing.T) {
	c := newClock()
	tb, p := newSetsPool(t, c, 3, "192.0.2.0/24")
	other, err := p.Allocate(b4(9), setReq(0)) // another B4 first on the address
	if err != nil {
		t.Fatal(err)
	}
	first, err := p.Allocate(b4(1), setReq(0))
	if err != nil {
		t.Fatal(err)
	}
	second, err := p.Allocate(b4(1), setReq(2))
	if err != nil {
		t.Fatal(err)
	}
	if second.Set != 2 || first.Set != 0 {
		t.Errorf("set numbers %d, %d; want 0, 2", first.Set, second.Set)
	}
	if second.IPv4 != first.IPv4 {
		t.Errorf("second set on %v, first on %v: want the same address (RFC 7753 §6.1)", second.IPv4, first.IPv4)
	}
	r1, r2 := rng(t, first), rng(t, second)
	if r1.Overlaps(r2) || r2.Overlaps(rng(t, other)) {
		t.Fatalf("overlapping sets %v %v (other B4 %v)", r1, r2, rng(t, other))
	}
	// Both route to the B4, downstream and upstream (RFC 7596 §6.2).
	for _, r := range []struct{ first uint16 }{{r1.First}, {r2.First}} {
		if got, _, ok := tb.Lookup(first.IPv4.As4(), r.first+5); !ok || got != b4(1) {
			t.Errorf("Lookup port %d: %v %v", r.first+5, got, ok)
		}
		if !tb.Check(b4(1), first.IPv4.As4(), r.first+5) {
			t.Errorf("Check port %d failed", r.first+5)
		}
	}
	// Renewing set 2 keeps it; asking set 0 again renews set 0 only.
	c.Advance(time.Minute)
	again, err := p.Allocate(b4(1), Request{Size: 2048, Lifetime: 2 * time.Hour, Set: 2, SuggestedIPv4: netip.MustParseAddr("192.0.2.77")})
	if err != nil || again.IPv4 != second.IPv4 || again.PSID != second.PSID || !again.Expires.Equal(c.Now().Add(2*time.Hour)) {
		t.Errorf("renewal of set 2: %v %v", again, err)
	}
	if b, _ := p.Allocate(b4(1), setReq(0)); b.PSID != first.PSID {
		t.Errorf("set 0 renewal moved: %v, was %v", b, first)
	}
	if n := len(tb.ByB4(b4(1))); n != 2 {
		t.Errorf("%d bindings, want 2", n)
	}
	// A third set fits the cap of 3, a fourth does not.
	if _, err := p.Allocate(b4(1), setReq(3)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Allocate(b4(1), setReq(4)); !errors.Is(err, ErrSetLimit) {
		t.Errorf("fourth set: %v, want ErrSetLimit", err)
	}
	if _, err := p.Allocate(b4(1), setReq(3)); err != nil {
		t.Errorf("renewal at the cap: %v", err)
	}
	// Releasing one set frees room and leaves the others routed.
	if ok, err := p.ReleaseSet(b4(1), 2); !ok || err != nil {
		t.Fatalf("ReleaseSet 2: %v %v", ok, err)
	}
	if _, _, ok := tb.Lookup(first.IPv4.As4(), r2.First); ok {
		t.Errorf("released set still routed")
	}
	if got, _, ok := tb.Lookup(first.IPv4.As4(), r1.First); !ok || got != b4(1) {
		t.Errorf("set 0 gone with set 2")
	}
	if ok, _ := p.ReleaseSet(b4(1), 2); ok {
		t.Errorf("second ReleaseSet reported a live binding")
	}
	if _, err := p.Allocate(b4(1), setReq(4)); err != nil {
		t.Errorf("set 4 after a release: %v", err)
	}
	// Release drops them all.
	if ok, _ := p.Release(b4(1)); !ok || len(tb.ByB4(b4(1))) != 0 {
		t.Errorf("Release left %v", tb.ByB4(b4(1)))
	}
	verify(t, tb)
}

// A set released into hold-down comes back to its B4 under any set number,
// and is never overwritten while it is another set's live block.
func TestPoolSetHoldDownReclaim(t *testing.T) {
	c := newClock()
	tb, p := newSetsPool(t, c, 4, "192.0.2.0/31")
	s0, _ := p.Allocate(b4(1), setReq(0))
	s2, _ := p.Allocate(b4(1), setReq(2))
	if _, err := p.ReleaseSet(b4(1), 2); err != nil {
		t.Fatal(err)
	}
	// Another B4 takes what is free but not the held block.
	for i := 10; i < 60; i++ {
		b, err := p.Allocate(b4(i), setReq(0))
		if err != nil {
			break
		}
		if b.IPv4 == s2.IPv4 && b.PSID == s2.PSID {
			t.Fatalf("held block of B4 1 given to %v", b.B4)
		}
	}
	back, err := p.Allocate(b4(1), Request{Size: 2048, Lifetime: time.Hour, Set: 3, SuggestedIPv4: s2.IPv4, SuggestedFirstPort: rng(t, s2).First})
	if err != nil || back.PSID != s2.PSID || back.IPv4 != s2.IPv4 {
		t.Errorf("reclaim as set 3: %v %v, want %v", back, err, s2)
	}
	// Suggesting set 0's block for a new set must not take it.
	b, err := p.Allocate(b4(1), Request{Size: 2048, Lifetime: time.Hour, Set: 4, SuggestedIPv4: s0.IPv4, SuggestedFirstPort: rng(t, s0).First})
	if err == nil && b.IPv4 == s0.IPv4 && b.PSID == s0.PSID {
		t.Fatalf("set 4 took set 0's live block")
	}
	if got := tb.ByB4(b4(1)); len(got) < 2 {
		t.Errorf("B4 1 holds %v", got)
	}
	verify(t, tb)
}

// The per-prefix quota counts every set (RFC 6887 §11.3); bad set numbers
// and caps are errors.
func TestPoolSetsQuotaAndInvalid(t *testing.T) {
	c := newClock()
	tb := New(Config{Now: c.Now})
	p, err := NewPool(tb, PoolConfig{Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, PortsPerB4: 2048, BR: br1, QuotaPerPrefix: 2, MaxSetsPerB4: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Allocate(b4(1), setReq(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Allocate(b4(1), setReq(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Allocate(b4(1), setReq(3)); !errors.Is(err, ErrQuota) {
		t.Errorf("third set past a quota of 2: %v, want ErrQuota", err)
	}
	if _, err := p.Allocate(b4(1), setReq(MaxSet+1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("set %d: %v", MaxSet+1, err)
	}
	for _, n := range []int{-1, MaxSet + 1} {
		if _, err := NewPool(New(Config{}), PoolConfig{Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, PortsPerB4: 2048, BR: br1, MaxSetsPerB4: n}); !errors.Is(err, ErrInvalid) {
			t.Errorf("MaxSetsPerB4 %d: %v", n, err)
		}
	}
	// Default: one set per B4 (PROTOCOL.md §8 item 2).
	_, p1 := newPool(t, c, 2048, "198.51.100.0/24")
	if _, err := p1.Allocate(b4(1), setReq(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := p1.Allocate(b4(1), setReq(2)); !errors.Is(err, ErrSetLimit) {
		t.Errorf("second set by default: %v, want ErrSetLimit", err)
	}
}

// Restore keeps set numbers, so a journal of several sets per B4 replays.
func TestRestoreSets(t *testing.T) {
	c := newClock()
	tb, p := newSetsPool(t, c, 4, "192.0.2.0/24")
	for _, s := range []uint16{0, 2, 5} {
		if _, err := p.Allocate(b4(1), setReq(s)); err != nil {
			t.Fatal(err)
		}
	}
	snap := tb.Snapshot()
	tb2 := New(Config{Now: c.Now})
	for _, b := range snap {
		if err := tb2.Restore(b); err != nil {
			t.Fatalf("Restore %v: %v", b, err)
		}
	}
	got := map[uint16]bool{}
	for _, b := range tb2.ByB4(b4(1)) {
		got[b.Set] = true
	}
	if len(got) != 3 || !got[0] || !got[2] || !got[5] {
		t.Errorf("restored sets %v", got)
	}
	dup := snap[0]
	dup.PSID.ID++
	if err := tb2.Restore(dup); !errors.Is(err, ErrConflict) {
		t.Errorf("a second block as set %d: %v, want ErrConflict", dup.Set, err)
	}
}

// Random operations on several sets per B4 keep the table's invariants,
// the cap, and disjoint ports.
func TestRandomSetOperationsKeepInvariants(t *testing.T) {
	for seed := range uint64(6) {
		r := rand.New(rand.NewPCG(seed, 11))
		c := newClock()
		tb := New(Config{Now: c.Now})
		const maxSets = 3
		p, err := NewPool(tb, PoolConfig{
			Prefixes:     []netip.Prefix{netip.MustParsePrefix("192.0.2.0/30")},
			PortsPerB4:   4096,
			HoldDown:     time.Minute,
			MaxSetsPerB4: maxSets,
			BR:           br1,
		})
		if err != nil {
			t.Fatal(err)
		}
		for op := range 3000 {
			who := b4(r.IntN(20))
			set := []uint16{0, 2, 3, 4, 7}[r.IntN(5)]
			switch x := r.IntN(100); {
			case x < 55:
				p.Allocate(who, Request{Size: 4096, Lifetime: time.Duration(r.IntN(600)) * time.Second, Set: set})
			case x < 70:
				p.ReleaseSet(who, set)
			case x < 73:
				p.Release(who)
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
		per := map[netip.Addr]map[uint16]bool{}
		owner := map[[2]uint32]netip.Addr{}
		for _, b := range tb.Snapshot() {
			if per[b.B4] == nil {
				per[b.B4] = map[uint16]bool{}
			}
			if per[b.B4][b.Set] {
				t.Fatalf("seed %d: %v holds set %d twice", seed, b.B4, b.Set)
			}
			per[b.B4][b.Set] = true
			ports := b.Ports()
			for i := range ports.Len() {
				k := [2]uint32{u32(b.IPv4.As4()), uint32(ports.Nth(i))}
				if o, ok := owner[k]; ok {
					t.Fatalf("seed %d: %v port %d owned by %v and %v", seed, b.IPv4, ports.Nth(i), o, b.B4)
				}
				owner[k] = b.B4
			}
		}
		for who, sets := range per {
			if len(sets) > maxSets {
				t.Fatalf("seed %d: %v holds %d sets, cap %d", seed, who, len(sets), maxSets)
			}
		}
	}
}
