package bindings

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/portset"
)

func suggest(b Binding, t testing.TB) Request {
	return Request{Size: 65535, SuggestedIPv4: b.IPv4, SuggestedFirstPort: rng(t, b).First, Lifetime: time.Hour}
}

// Issue 11 item 4: a B4 whose binding lapsed gets its block back after the
// hold-down, with or without a suggestion, while newcomers are given other
// blocks; the reservation ends after ReserveFor.
func TestPoolPreviousSetBackAfterExpiry(t *testing.T) {
	c := newClock()
	_, p := newPool(t, c, 8192, "192.0.2.1/32", "192.0.2.2/32") // 7 blocks per address
	a, err := p.Allocate(b4(1), Request{Size: 65535, Lifetime: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(10*time.Minute + 2*time.Minute) // lifetime and hold-down over
	p.Expire()
	p.Expire()
	if st := p.Reservations(); st.Reserved != 1 {
		t.Fatalf("reservations %+v, want 1", st)
	}
	for i := 2; i <= 13; i++ { // every other block of both addresses
		b, err := p.Allocate(b4(i), asMuch)
		if err != nil {
			t.Fatal(err)
		}
		if b.IPv4 == a.IPv4 && b.PSID == a.PSID {
			t.Fatalf("newcomer %d took B4 1's reserved block %v", i, b)
		}
	}
	r, err := p.Allocate(b4(1), asMuch) // no suggestion: its own reservation
	if err != nil || r.IPv4 != a.IPv4 || r.PSID != a.PSID {
		t.Fatalf("B4 1 back without suggestion: %v %v, want %v", r, err, a)
	}
	if st := p.Reservations(); st.Reserved != 0 {
		t.Fatalf("reservation kept after reclaim: %+v", st)
	}
}

// Issue 11 item 4, the cascade: after a restart whose journal named the
// blocks (Reserve), newcomers that arrive first take unreserved blocks, and
// every old B4 then gets its previous set. Without the reservations the
// same order displaces old B4s, which is what the reservations prevent.
func TestPoolNoCascadeAfterRestart(t *testing.T) {
	const old, fresh = 20, 5
	var before []Binding
	{
		c := newClock()
		_, p := newPool(t, c, 4096, "198.51.100.0/30") // 15 blocks per address, 60 in all
		for i := range old {
			b, err := p.Allocate(b4(i), asMuch)
			if err != nil {
				t.Fatal(err)
			}
			before = append(before, b)
		}
	}
	restart := func(reserve bool) (moved int) {
		c := newClock()
		_, p := newPool(t, c, 4096, "198.51.100.0/30")
		if reserve {
			for _, b := range before {
				if err := p.Reserve(b.B4, b, c.Now().Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
			}
		}
		for i := range fresh {
			if _, err := p.Allocate(b4(1000+i), asMuch); err != nil {
				t.Fatal(err)
			}
		}
		for _, b := range before {
			got, err := p.Allocate(b.B4, suggest(b, t))
			if err != nil {
				t.Fatal(err)
			}
			if got.IPv4 != b.IPv4 || got.PSID != b.PSID {
				moved++
			}
		}
		return moved
	}
	if m := restart(false); m == 0 {
		t.Fatal("control: no B4 moved without reservations; the test proves nothing")
	}
	if m := restart(true); m != 0 {
		t.Fatalf("%d of %d B4s moved despite the reservations", m, old)
	}
}

// A reservation is soft: a B4 naming that exact block gets it (no live
// binding holds it), another block on the suggested address is chosen
// among unreserved ones, and when nothing unreserved is left a newcomer
// gets the oldest reservation rather than NO_RESOURCES.
func TestPoolReservationSoft(t *testing.T) {
	c := newClock()
	_, p := newPool(t, c, 16384, "192.0.2.5/32") // blocks 16384, 32768, 49152
	ip := netip.MustParseAddr("192.0.2.5")
	blk := func(id uint16) Binding { return Binding{IPv4: ip, PSID: portset.PSID{Length: 2, ID: id}} }
	until := c.Now().Add(time.Hour)
	if err := p.Reserve(b4(1), blk(1), until); err != nil {
		t.Fatal(err)
	}
	if err := p.Reserve(b4(2), blk(2), until); err != nil {
		t.Fatal(err)
	}
	// B4 3 suggests B4 1's block's address, another port: not B4 2's block.
	got, err := p.Allocate(b4(3), Request{Size: 65535, SuggestedIPv4: ip, SuggestedFirstPort: 1, Lifetime: time.Hour})
	if err != nil || got.PSID.ID != 3 {
		t.Fatalf("B4 3: %v %v, want the unreserved block 3", got, err)
	}
	// B4 4 names B4 2's block exactly: granted.
	got, err = p.Allocate(b4(4), suggest(Binding{IPv4: ip, PSID: portset.PSID{Length: 2, ID: 2}}, t))
	if err != nil || got.PSID.ID != 2 {
		t.Fatalf("B4 4 naming block 2: %v %v", got, err)
	}
	// Nothing unreserved left: a newcomer gets B4 1's reservation.
	got, err = p.Allocate(b4(5), asMuch)
	if err != nil || got.PSID.ID != 1 {
		t.Fatalf("B4 5: %v %v, want the reserved block 1", got, err)
	}
	if _, err := p.Allocate(b4(6), asMuch); !errors.Is(err, ErrNoResources) {
		t.Fatalf("B4 6: %v, want ErrNoResources", err)
	}
	if st := p.Reservations(); st.Reserved != 0 {
		t.Fatalf("reservations %+v, want none", st)
	}
}

// Reserve refuses what is not a pool block and what another B4 holds, and
// the count stays within MaxReserved, the oldest evicted and counted.
func TestPoolReserveBounds(t *testing.T) {
	c := newClock()
	tb := New(Config{Now: c.Now})
	p, err := NewPool(tb, PoolConfig{Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/31")}, PortsPerB4: 16384, MaxReserved: 2, BR: br1})
	if err != nil {
		t.Fatal(err)
	}
	until := c.Now().Add(time.Hour)
	ip := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	blk := func(a string, id uint16) Binding { return Binding{IPv4: ip(a), PSID: portset.PSID{Length: 2, ID: id}} }
	for _, b := range []Binding{
		blk("203.0.113.1", 1), // not in the pool
		blk("192.0.2.0", 0),   // the system ports
		{IPv4: ip("192.0.2.0"), PSID: portset.PSID{Length: 1, ID: 1}}, // bigger than PortsPerB4
		{IPv4: ip("192.0.2.0"), PSID: portset.PSID{Offset: 4, Length: 2, ID: 1}},
	} {
		if err := p.Reserve(b4(1), b, until); !errors.Is(err, ErrInvalid) {
			t.Errorf("Reserve(%v) = %v, want ErrInvalid", b, err)
		}
	}
	live, err := p.Allocate(b4(9), asMuch)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Reserve(b4(1), live, until); !errors.Is(err, ErrInvalid) {
		t.Errorf("Reserve for B4 1 of B4 9's binding: %v, want ErrInvalid", err)
	}
	other := live
	other.B4 = netip.Addr{}
	if err := p.Reserve(b4(1), other, until); !errors.Is(err, ErrConflict) {
		t.Errorf("Reserve of a live block of another B4: %v, want ErrConflict", err)
	}
	if err := p.Reserve(b4(9), live, until); err != nil {
		t.Errorf("Reserve of the owner's live block: %v, want a no-op", err)
	}
	if err := p.Reserve(b4(1), blk("192.0.2.0", 2), c.Now()); err != nil || p.Reservations().Reserved != 0 {
		t.Errorf("Reserve until now: %v %+v, want a no-op", err, p.Reservations())
	}
	for i, b := range []Binding{blk("192.0.2.0", 2), blk("192.0.2.0", 3), blk("192.0.2.1", 1)} {
		if err := p.Reserve(b4(1+i), b, until); err != nil {
			t.Fatal(err)
		}
	}
	if st := p.Reservations(); st.Reserved != 2 || st.Evicted != 1 {
		t.Fatalf("reservations %+v, want 2 kept and 1 evicted", st)
	}
	// The oldest (B4 1's) went: its block is free for anyone again.
	if got, err := p.Allocate(b4(7), asMuch); err != nil || got.IPv4 != ip("192.0.2.0") || got.PSID.ID != 2 {
		t.Fatalf("after eviction: %v %v", got, err)
	}
	verify(t, tb)
	// Reservations end on their own.
	c.Advance(time.Hour)
	p.Expire()
	if st := p.Reservations(); st.Reserved != 0 {
		t.Fatalf("reservations %+v after their end", st)
	}
	verify(t, tb)
}
