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
