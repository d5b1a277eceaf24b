package socks5

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// associate opens a UDP association from a fresh control connection.
func associate(t *testing.T, addr string, client netip.AddrPort) (ctrl *net.TCPConn, relay netip.AddrPort) {
	t.Helper()
	ctrl = dialServer(t, addr)
	rep, bnd := doRequest(t, ctrl, ipRequest(cmdUDPAssociate, client))
	if rep != repSucceeded {
		t.Fatalf("UDP ASSOCIATE: reply %v", rep)
	}
	if bnd.Addr() != loopback4 || bnd.Port() == 0 {
		t.Fatalf("relay address %v", bnd)
	}
	return ctrl, bnd
}

func udpClient(t *testing.T, ip netip.Addr) *net.UDPConn {
	t.Helper()
	u, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		t.Skipf("cannot bind %v: %v", ip, err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

// recv reads one datagram from the relay and splits it.
func recv(t *testing.T, u *net.UDPConn, relay netip.AddrPort, d time.Duration) (netip.AddrPort, []byte, bool) {
	t.Helper()
	buf := make([]byte, 1<<16)
	u.SetReadDeadline(time.Now().Add(d))
	n, from, err := u.ReadFromUDPAddrPort(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return netip.AddrPort{}, nil, false
	}
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if from != relay {
		t.Fatalf("datagram from %v, not the relay %v", from, relay)
	}
	frag, src, payload, err := parseUDPHeader(buf[:n])
	if err != nil || frag != 0 || src.name != "" {
		t.Fatalf("reply header: frag %d src %v err %v", frag, src, err)
	}
	return netip.AddrPortFrom(src.ip, src.port), payload, true
}

func TestUDPAssociateEcho(t *testing.T) {
	checkLeaks(t)
	echo := udpEcho(t)
	addr := startServer(t, &Server{Dialer: &netDialer{}})
	_, relay := associate(t, addr, netip.AddrPort{})
	u := udpClient(t, loopback4)

	for _, size := range []int{0, 1, 512, 8192, 60000} {
		payload := bytes.Repeat([]byte{byte(size)}, size)
		if _, err := u.WriteToUDPAddrPort(udpDatagram(0, echo, payload), relay); err != nil {
			t.Fatal(err)
		}
		src, got, ok := recv(t, u, relay, 5*time.Second)
		if !ok {
			t.Fatalf("size %d: no reply", size)
		}
		if src != echo || !bytes.Equal(got, payload) {
			t.Fatalf("size %d: reply from %v with %d bytes", size, src, len(got))
		}
	}
}

func TestUDPAssociateDrops(t *testing.T) {
	checkLeaks(t)
	echo := udpEcho(t)
	addr := startServer(t, &Server{Dialer: &netDialer{}})
	u := udpClient(t, loopback4)
	_, relay := associate(t, addr, addrPortOf(u.LocalAddr())) // this port only

	send := func(c *net.UDPConn, b []byte) {
		t.Helper()
		if _, err := c.WriteToUDPAddrPort(b, relay); err != nil {
			t.Fatal(err)
		}
	}
	// Dropped: fragments, malformed headers, IPv6 destinations, names
	// without a resolver, other source ports, other source addresses.
	send(u, udpDatagram(1, echo, []byte("frag 1")))
	send(u, udpDatagram(0x81, echo, []byte("frag last")))
	send(u, []byte{0, 0, 0})
	send(u, []byte{0, 0, 0, 9, 1, 2, 3, 4, 0, 7})
	send(u, []byte{0, 0, 0, atypIPv4, 127, 0, 0})
	send(u, []byte{0, 0, 0, atypDomain, 0, 0, 7})
	send(u, udpDatagram(0, netip.AddrPortFrom(netip.IPv6Loopback(), echo.Port()), []byte("v6")))
	send(u, append([]byte{0, 0, 0, atypDomain, 9}, "echo.test\x00\x07"...))
	other := udpClient(t, loopback4)
	send(other, udpDatagram(0, echo, []byte("other port")))
	// Then a good one, which must be the first reply.
	send(u, udpDatagram(0, echo, []byte("good")))
	if _, got, ok := recv(t, u, relay, 5*time.Second); !ok || string(got) != "good" {
		t.Fatalf("first reply %q (ok %v)", got, ok)
	}
	if _, got, ok := recv(t, u, relay, 200*time.Millisecond); ok {
		t.Fatalf("extra reply %q", got)
	}
	if _, got, ok := recv(t, other, relay, 100*time.Millisecond); ok {
		t.Fatalf("other port got %q", got)
	}

	// Another address (127.0.0.2 is loopback on Linux) is dropped even
	// with port 0 in the request.
	_, relay2 := associate(t, addr, netip.AddrPort{})
	stranger := udpClient(t, netip.MustParseAddr("127.0.0.2"))
	stranger.WriteToUDPAddrPort(udpDatagram(0, echo, []byte("stranger")), relay2)
	if _, got, ok := recv(t, stranger, relay2, 200*time.Millisecond); ok {
		t.Fatalf("stranger got %q", got)
	}
}

// With port 0 in the request, any port of the client's address may send;
// replies go to the latest sender.
func TestUDPAssociateAnyClientPort(t *testing.T) {
	checkLeaks(t)
	echo := udpEcho(t)
	addr := startServer(t, &Server{Dialer: &netDialer{}})
	_, relay := associate(t, addr, netip.AddrPort{})
	for i := range 2 {
		u := udpClient(t, loopback4)
		u.WriteToUDPAddrPort(udpDatagram(0, echo, []byte{byte(i)}), relay)
		if _, got, ok := recv(t, u, relay, 5*time.Second); !ok || !bytes.Equal(got, []byte{byte(i)}) {
			t.Fatalf("client %d: %q %v", i, got, ok)
		}
	}
}

func TestUDPAssociateDomain(t *testing.T) {
	checkLeaks(t)
	echo := udpEcho(t)
	res := &fakeResolver{names: map[string][]netip.Addr{"echo.test": {loopback4}}}
	addr := startServer(t, &Server{Dialer: &netDialer{}, Resolver: res})
	_, relay := associate(t, addr, netip.AddrPort{})
	u := udpClient(t, loopback4)
	name := func(n string, payload string) []byte {
		b := append([]byte{0, 0, 0, atypDomain, byte(len(n))}, n...)
		return append(b, byte(echo.Port()>>8), byte(echo.Port()), payload[0])
	}
	u.WriteToUDPAddrPort(name("nx.test", "n"), relay)
	for _, p := range []string{"a", "b", "c"} {
		u.WriteToUDPAddrPort(name("echo.test", p), relay)
		src, got, ok := recv(t, u, relay, 5*time.Second)
		if !ok || string(got) != p || src != echo {
			t.Fatalf("reply %q from %v (ok %v)", got, src, ok)
		}
	}
	res.mu.Lock()
	lookups := len(res.networks)
	res.mu.Unlock()
	if lookups != 2 {
		t.Fatalf("%d lookups, want 2 (nx.test, then echo.test cached)", lookups)
	}
}

// The association ends when the control connection closes.
func TestUDPAssociateEndsWithControl(t *testing.T) {
	checkLeaks(t)
	echo := udpEcho(t)
	srv := &Server{Dialer: &netDialer{}}
	defer srv.Close()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		done <- srv.ServeConn(context.Background(), c)
	}()
	ctrl := dialServer(t, ln.Addr().String())
	_, relay := doRequestRelay(t, ctrl)
	u, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(relay))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Write(udpDatagram(0, echo, []byte("hi")))
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := u.Read(make([]byte, 64)); err != nil {
		t.Fatal(err)
	}

	ctrl.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeConn = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("association outlived its control connection")
	}
	u.Write(udpDatagram(0, echo, []byte("late")))
	u.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := u.Read(make([]byte, 64)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("relay socket still open: %v", err)
	}
}

func doRequestRelay(t *testing.T, ctrl net.Conn) (reply, netip.AddrPort) {
	t.Helper()
	rep, bnd := doRequest(t, ctrl, ipRequest(cmdUDPAssociate, netip.AddrPort{}))
	if rep != repSucceeded {
		t.Fatalf("reply %v", rep)
	}
	return rep, bnd
}

func TestParseUDPHeader(t *testing.T) {
	for _, tc := range []struct {
		in      []byte
		frag    byte
		dst     string
		payload string
		err     bool
	}{
		{[]byte{0, 0, 0, 1, 1, 2, 3, 4, 0, 80, 'x'}, 0, "1.2.3.4:80", "x", false},
		{[]byte{0, 0, 5, 1, 1, 2, 3, 4, 0, 80}, 5, "1.2.3.4:80", "", false},
		{append([]byte{0, 0, 0, 3, 3}, "a.b\x01\xbby"...), 0, "a.b:443", "y", false},
		{append(append([]byte{0, 0, 0, 4}, netip.MustParseAddr("2001:db8::1").AsSlice()...), 0, 53), 0, "[2001:db8::1]:53", "", false},
		{append(append([]byte{0, 0, 0, 4}, netip.MustParseAddr("::ffff:10.0.0.1").AsSlice()...), 0, 53), 0, "10.0.0.1:53", "", false},
		{nil, 0, "", "", true},
		{[]byte{0, 0, 0}, 0, "", "", true},
		{[]byte{0, 0, 0, 1, 1, 2, 3, 4, 0}, 0, "", "", true},
		{[]byte{0, 0, 0, 3}, 0, "", "", true},
		{[]byte{0, 0, 0, 3, 0, 0, 80}, 0, "", "", true},
		{[]byte{0, 0, 0, 3, 5, 'a', 0, 80}, 0, "", "", true},
		{[]byte{0, 0, 0, 4, 1, 2, 3}, 0, "", "", true},
		{[]byte{0, 0, 0, 2, 1, 2, 3, 4, 0, 80}, 0, "", "", true},
	} {
		frag, dst, payload, err := parseUDPHeader(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("% x: err %v", tc.in, err)
			continue
		}
		if err != nil {
			continue
		}
		if frag != tc.frag || dst.String() != tc.dst || string(payload) != tc.payload {
			t.Errorf("% x: frag %d dst %v payload %q", tc.in, frag, dst, payload)
		}
	}
}
