package socks5

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/loopback"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// The production Dialer is a gVisor LAN host; these tests run the server
// against gonet on a loopback gVisor stack.

var (
	gvHost   = netip.MustParseAddr("198.18.0.2") // the "LAN host" that dials
	gvRemote = netip.MustParseAddr("198.18.0.3") // servers
)

func gvAddr(ap netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(ap.Addr().As4()), Port: ap.Port()}
}

func newGVisor(t *testing.T) *stack.Stack {
	t.Helper()
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	if err := s.CreateNIC(1, loopback.New()); err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{gvHost, gvRemote} {
		pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddrFrom4(a.As4()).WithPrefix()}
		if err := s.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
			t.Fatal(err)
		}
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}})
	t.Cleanup(func() { s.Close(); s.Wait() })
	return s
}

type gvDialer struct{ s *stack.Stack }

func (d gvDialer) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	return gonet.DialTCPWithBind(ctx, d.s, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(gvHost.As4())}, gvAddr(dst), ipv4.ProtocolNumber)
}

func (d gvDialer) ListenUDP(context.Context) (net.PacketConn, error) {
	la := tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(gvHost.As4())}
	return gonet.DialUDP(d.s, &la, nil, ipv4.ProtocolNumber)
}

func TestGVisorConnect(t *testing.T) {
	checkLeaks(t)
	s := newGVisor(t)
	echoAddr := netip.AddrPortFrom(gvRemote, 7)
	ln, err := gonet.ListenTCP(s, gvAddr(echoAddr), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	peers := make(chan netip.AddrPort, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		peers <- addrPortOf(c.RemoteAddr())
		io.Copy(c, c)
		c.(*gonet.TCPConn).CloseWrite()
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })

	addr := startServer(t, &Server{Dialer: gvDialer{s}})
	c := dialServer(t, addr)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	rep, bnd := doRequest(t, c, ipRequest(cmdConnect, echoAddr))
	if rep != repSucceeded {
		t.Fatalf("reply %v", rep)
	}
	if peer := <-peers; bnd != peer || bnd.Addr() != gvHost {
		t.Fatalf("BND %v, echo server saw %v", bnd, peer)
	}
	data := make([]byte, 4<<20)
	rand.Read(data)
	go func() { c.Write(data); c.CloseWrite() }()
	h := sha256.New()
	n, err := io.Copy(h, c)
	want := sha256.Sum256(data)
	if err != nil || n != int64(len(data)) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("echo: %d bytes, err %v, equal %v", n, err, bytes.Equal(h.Sum(nil), want[:]))
	}
}

func TestGVisorRefused(t *testing.T) {
	checkLeaks(t)
	s := newGVisor(t)
	addr := startServer(t, &Server{Dialer: gvDialer{s}})
	c := dialServer(t, addr)
	if rep, _ := doRequest(t, c, ipRequest(cmdConnect, netip.AddrPortFrom(gvRemote, 9))); rep != repConnectionRefused {
		t.Fatalf("reply %v, want connection refused", rep)
	}
}

func TestGVisorUDPAssociate(t *testing.T) {
	checkLeaks(t)
	s := newGVisor(t)
	echoAddr := netip.AddrPortFrom(gvRemote, 7)
	la := gvAddr(echoAddr)
	pc, err := gonet.DialUDP(s, &la, nil, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1<<16)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })

	addr := startServer(t, &Server{Dialer: gvDialer{s}})
	_, relay := associate(t, addr, netip.AddrPort{})
	u := udpClient(t, loopback4)
	for _, p := range []string{"one", "two"} {
		u.WriteToUDPAddrPort(udpDatagram(0, echoAddr, []byte(p)), relay)
		src, got, ok := recv(t, u, relay, 5*time.Second)
		if !ok || string(got) != p || src != echoAddr {
			t.Fatalf("reply %q from %v (ok %v)", got, src, ok)
		}
	}
}
