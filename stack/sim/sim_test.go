package sim

import (
	"context"
	"io"
	"net/netip"
	"testing"
	"time"
)

// Two netstack hosts on one network: TCP, UDP and ping work end to end.
func TestHostsTalk(t *testing.T) {
	n := NewNetwork("lan")
	defer n.Close()
	a, err := NewHost(n, "a", 1500, nil, netip.MustParsePrefix("192.0.2.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewHost(n, "b", 1500, nil, netip.MustParsePrefix("192.0.2.2/24"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	ln, err := b.ListenTCP(netip.MustParseAddrPort("192.0.2.2:80"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	c, err := a.DialTCP(ctx, netip.MustParseAddrPort("192.0.2.2:80"))
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 100000)
	go func() { c.Write(msg); c.CloseWrite() }()
	got, err := io.ReadAll(c)
	if err != nil || len(got) != len(msg) {
		t.Fatalf("echo: %d bytes, %v", len(got), err)
	}
	c.Close()

	if _, err := a.Ping(ctx, netip.MustParseAddr("192.0.2.2"), 1, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if n.Delivered.Load() == 0 {
		t.Fatal("nothing delivered")
	}
}

func TestMulticastFloodsAndNoRoute(t *testing.T) {
	n := NewNetwork("x")
	defer n.Close()
	got := make(chan []byte, 4)
	a, _ := n.Attach("a", func(b []byte) { got <- b }, netip.MustParsePrefix("2001:db8::a/128"))
	b, _ := n.Attach("b", func(b []byte) { got <- b }, netip.MustParsePrefix("2001:db8::b/128"))
	pkt := make([]byte, 40)
	pkt[0] = 0x60
	copy(pkt[24:], netip.MustParseAddr("ff02::1").AsSlice())
	a.Send(pkt)
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("multicast not delivered")
	}
	copy(pkt[24:], netip.MustParseAddr("2001:db8::c").AsSlice())
	b.Send(pkt)
	if n.NoRoute.Load() != 1 {
		t.Fatalf("NoRoute = %d", n.NoRoute.Load())
	}
}
