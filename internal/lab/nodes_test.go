package lab

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// B4s added at run time get new addresses, are provisioned and carry
// traffic; a removed B4's binding is deleted at the AFTR, it leaves the
// access network, and its goroutines end: adding and removing B4s over and
// over leaves the goroutine count where it was.
func TestAddRemoveB4(t *testing.T) {
	w := newWorld(t, Config{B4s: 2, PortsPerB4: 4096})
	ctx := testCtx(t)

	n, err := w.AddB4()
	if err != nil {
		t.Fatal(err)
	}
	if n.Index != 2 || n.Addr != B4Addr(2) || w.Nodes[2] != n || n.Host == nil {
		t.Fatalf("added B4 %d at %v (hosted %v), Nodes[2] %v: want B4 2, hosted", n.Index, n.Addr, n.Host != nil, w.Nodes[2].Addr)
	}
	if err := w.WaitProvisioned(ctx); err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := w.UDP(ctx, 2, &r); err != nil {
		t.Fatalf("the added B4's host: %v", err)
	}
	if !hasBinding(w, n) {
		t.Fatal("the AFTR holds no binding for the added B4")
	}

	// Remove the first B4: its binding goes (Run's delete), and so does
	// its attachment to the access network.
	first := w.Nodes[0]
	ports := accessPorts(w)
	if err := w.RemoveB4(first); err != nil {
		t.Fatal(err)
	}
	if hasBinding(w, first) {
		t.Fatalf("the AFTR still holds the removed B4's binding: %v", w.AFTR.Bindings())
	}
	if got := accessPorts(w); got != ports-1 {
		t.Fatalf("access network ports %d after the removal, %d before", got, ports)
	}
	if len(w.Nodes) != 2 || w.Nodes[0].Index != 1 || w.Nodes[1] != n {
		t.Fatalf("Nodes after the removal: %d, first index %d", len(w.Nodes), w.Nodes[0].Index)
	}
	if err := w.RemoveB4(first); !errors.Is(err, errNoNode) {
		t.Fatalf("removing it again: %v, want errNoNode", err)
	}
	if err := w.UDP(ctx, 1, &r); err != nil {
		t.Fatalf("the remaining B4's host after the removal: %v", err)
	}

	// Churn: each round adds a B4, waits for it, removes it. The
	// goroutines come back to where they were (with a margin for the
	// runtime's and gVisor's own, and a wait for them to end).
	settle(t, ctx)
	before := runtime.NumGoroutine()
	for round := 0; round < 5; round++ {
		m, err := w.AddB4()
		if err != nil {
			t.Fatal(err)
		}
		if m.Index != 3+round {
			t.Fatalf("round %d: index %d, want %d (never reused)", round, m.Index, 3+round)
		}
		if err := w.WaitProvisioned(ctx); err != nil {
			t.Fatal(err)
		}
		if err := w.RemoveB4(m); err != nil {
			t.Fatal(err)
		}
		if hasBinding(w, m) {
			t.Fatalf("round %d: the removed B4's binding is still held", round)
		}
	}
	if err := waitGoroutines(ctx, before+3); err != nil {
		t.Fatalf("after 5 B4s added and removed: %v (before: %d)", err, before)
	}
}

func hasBinding(w *World, n *Node) bool {
	for _, b := range w.AFTR.Bindings() {
		if b.B4 == n.Addr {
			return true
		}
	}
	return false
}

func accessPorts(w *World) int { return w.Access.Ports() }

// settle lets the start-up goroutines (first TCP timers, gVisor's) come
// and go before a count is taken.
func settle(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := sleep(ctx, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

// waitGoroutines waits until at most want goroutines run.
func waitGoroutines(ctx context.Context, want int) error {
	for {
		got := runtime.NumGoroutine()
		if got <= want {
			return nil
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("%d goroutines, want at most %d", got, want)
		}
	}
}
