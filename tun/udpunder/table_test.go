package udpunder

import (
	"net/netip"
	"testing"
	"time"
)

func TestTableExpiryMoveEvict(t *testing.T) {
	now := time.Unix(1e9, 0)
	tb := newTable(2, time.Minute, func() time.Time { return now })
	a, b, c := [16]byte{0x20, 1, 0xd, 0xb8, 15: 1}, [16]byte{0x20, 1, 0xd, 0xb8, 15: 2}, [16]byte{0x20, 1, 0xd, 0xb8, 15: 3}
	ep1 := netip.MustParseAddrPort("192.0.2.1:1000")
	ep2 := netip.MustParseAddrPort("192.0.2.1:2000")

	tb.learn(a, ep1)
	if got, ok := tb.lookup(a); !ok || got != ep1 {
		t.Fatalf("lookup a = %v, %v", got, ok)
	}
	now = now.Add(10 * time.Second)
	tb.learn(a, ep2) // the B4 moved (NAT rebinding, restart)
	if got, _ := tb.lookup(a); got != ep2 {
		t.Fatalf("after move: %v", got)
	}
	now = now.Add(10 * time.Second)
	tb.learn(b, ep1)
	now = now.Add(10 * time.Second)
	tb.learn(a, ep2) // refresh: a is now the most recently seen
	tb.learn(c, ep1) // full: b, the oldest, goes
	if _, ok := tb.lookup(b); ok {
		t.Fatal("b was not evicted")
	}
	if _, ok := tb.lookup(a); !ok {
		t.Fatal("a was evicted")
	}
	now = now.Add(time.Minute)
	if _, ok := tb.lookup(a); ok {
		t.Fatal("a did not expire")
	}
	var s Stats
	tb.stats(&s)
	if s.Learned != 3 || s.Moved != 1 || s.Evicted != 1 || s.Expired != 1 || s.Endpoints != 1 {
		t.Fatalf("stats %+v", s)
	}
	// A later learn sweeps c, which expired too.
	tb.learn(b, ep1)
	tb.stats(&s)
	if s.Expired != 2 || s.Endpoints != 1 {
		t.Fatalf("after sweep %+v", s)
	}
}

// A bound entry that expired unswept is gone, binding and all: the next
// sender gets an ordinary entry, and the B4 coming back is not shut out by
// a binding the stranger inherited.
func TestTableExpiredBindingNotInherited(t *testing.T) {
	now := time.Unix(1e9, 0)
	tb := newTable(8, time.Minute, func() time.Time { return now })
	a := [16]byte{0x20, 1, 0xd, 0xb8, 15: 1}
	b4 := netip.MustParseAddrPort("192.0.2.1:1000")
	stranger := netip.MustParseAddrPort("192.0.2.9:9000")
	tb.propose(a, 7, b4)
	if ep, ok := tb.settle(a, 7, true); !ok || ep != b4 {
		t.Fatalf("settle = %v, %v", ep, ok)
	}
	if tb.learnUnbound(a, stranger) {
		t.Fatal("a stranger took a live binding")
	}
	now = now.Add(2 * time.Minute) // the entry expires; nothing sweeps it
	if !tb.learnUnbound(a, stranger) {
		t.Fatal("an expired entry still refuses")
	}
	now = now.Add(time.Second)
	if !tb.learnUnbound(a, b4) {
		t.Fatal("the B4 is shut out by the binding the stranger inherited")
	}
	if ep, _ := tb.lookup(a); ep != b4 {
		t.Fatalf("endpoint %v, want the B4's %v", ep, b4)
	}
}

// A full table makes room by pushing out the oldest entry no handshake
// bound: a sender inventing source addresses cannot push a bound B4 out
// and then take its address.
func TestTableEvictsUnboundFirst(t *testing.T) {
	now := time.Unix(1e9, 0)
	tb := newTable(2, time.Minute, func() time.Time { return now })
	b4, x, y := [16]byte{0x20, 1, 0xd, 0xb8, 15: 1}, [16]byte{0x20, 1, 0xd, 0xb8, 15: 2}, [16]byte{0x20, 1, 0xd, 0xb8, 15: 3}
	ep := netip.MustParseAddrPort("192.0.2.1:1000")
	thief := netip.MustParseAddrPort("192.0.2.9:9000")
	tb.propose(b4, 1, ep)
	tb.settle(b4, 1, true) // bound, and the oldest entry
	now = now.Add(time.Second)
	tb.learnUnbound(x, thief)
	now = now.Add(time.Second)
	tb.learnUnbound(y, thief) // full: x goes, not the bound B4
	if got, ok := tb.lookup(b4); !ok || got != ep {
		t.Fatalf("the bound B4 was pushed out: %v, %v", got, ok)
	}
	if tb.learnUnbound(b4, thief) {
		t.Fatal("the thief took the B4's address")
	}
}
