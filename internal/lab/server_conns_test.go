package lab

import (
	"io"
	"net/netip"
	"testing"
	"time"
)

// The Internet host forgets each TCP connection, echo or transfer, once it
// has ended: a run of short connections (the soak test's) does not pile
// them up (the echo service kept every one until Close).
func TestServerForgetsClosedConns(t *testing.T) {
	w := newWorld(t, Config{B4s: 1})
	ctx := testCtx(t)
	h := w.Nodes[0].Host
	for i := 0; i < 10; i++ {
		c, err := h.DialTCP(ctx, netip.AddrPortFrom(ServerAddr, TCPEchoPort))
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte("lw4o6 soak")
		got := make([]byte, len(msg))
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
			t.Fatalf("echo %d: %q, %v", i, got, err)
		}
		c.Close()
		var r Result
		if err := w.TCP(ctx, 0, 1000, &r); err != nil {
			t.Fatal(err)
		}
	}
	for w.Server.OpenConns() != 0 {
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			t.Fatalf("%d connections still held after 20 closed: %v", w.Server.OpenConns(), err)
		}
	}
}
