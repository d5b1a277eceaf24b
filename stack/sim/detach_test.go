package sim

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// A detached port gets nothing more (unicast to its prefix: no route;
// multicast: not flooded to it), its goroutine has returned, and the
// network no longer lists it; the other ports carry on.
func TestDetach(t *testing.T) {
	n := NewNetwork("x")
	defer n.Close()
	var toA atomic.Uint64
	got := make(chan []byte, 4)
	a, err := n.Attach("a", func([]byte) { toA.Add(1) }, netip.MustParsePrefix("2001:db8::a/128"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.Attach("b", func(p []byte) { got <- p }, netip.MustParsePrefix("2001:db8::b/128"))
	if err != nil {
		t.Fatal(err)
	}
	a.Detach()
	select {
	case <-a.exited:
	default:
		t.Fatal("Detach returned with the port's goroutine running")
	}
	n.mu.RLock()
	routes := len(n.routes)
	n.mu.RUnlock()
	ports := n.Ports()
	if ports != 1 || routes != 1 {
		t.Fatalf("after Detach: %d ports, %d routes; want 1 and 1", ports, routes)
	}

	pkt := make([]byte, 40)
	pkt[0] = 0x60
	copy(pkt[24:], netip.MustParseAddr("2001:db8::a").AsSlice())
	b.Send(pkt)
	if n.NoRoute.Load() != 1 {
		t.Fatalf("unicast to the detached port: NoRoute = %d, want 1", n.NoRoute.Load())
	}
	// Multicast from b reaches nobody (a is gone); from a (a detached
	// port may still send) it reaches b.
	copy(pkt[24:], netip.MustParseAddr("ff02::1").AsSlice())
	b.Send(pkt)
	if n.NoRoute.Load() != 2 {
		t.Fatalf("multicast with no other port: NoRoute = %d, want 2", n.NoRoute.Load())
	}
	a.Send(pkt)
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("multicast from the detached port not delivered to b")
	}
	if toA.Load() != 0 {
		t.Fatalf("the detached port received %d packets", toA.Load())
	}
	a.Detach() // idempotent
}
