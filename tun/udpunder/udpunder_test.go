package udpunder

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/tun"
	"github.com/lw4o6/lw4o6/tun/internal/devtest"
)

const timeout = 5 * time.Second

func pkt4in6(src, dst netip.Addr, id uint16) []byte {
	return devtest.IPv6(src, dst, 4, 64, 0, devtest.IPv4UDP(devtest.Host, devtest.Peer, 4000, id, []byte("lab")))
}

func listen(t *testing.T, host string, opts ...Option) *Device {
	t.Helper()
	s, err := NewServer(net.JoinHostPort(host, "0"), opts...)
	if err != nil {
		t.Skipf("no %s: %v", host, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(t *testing.T, s *Device) *Device {
	t.Helper()
	c, err := NewClient("", s.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestClientServer(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			devtest.LeakCheck(t)
			s := listen(t, host)
			a, b := dial(t, s), dial(t, s)

			// Nothing learned yet: the server drops and says so.
			toA := pkt4in6(devtest.AFTR, devtest.B4, 1)
			if n, err := s.Write([][]byte{devtest.Room(toA, tun.Headroom)}, tun.Headroom); n != 0 || !errors.Is(err, ErrNoEndpoint) {
				t.Fatalf("Write before learning = %d, %v; want 0, ErrNoEndpoint", n, err)
			}

			fromA, fromB := pkt4in6(devtest.B4, devtest.AFTR, 2), pkt4in6(devtest.B4b, devtest.AFTR, 3)
			if n, err := a.Write([][]byte{devtest.Room(fromA, 0)}, 0); n != 1 || err != nil {
				t.Fatalf("a.Write = %d, %v", n, err)
			}
			if n, err := b.Write([][]byte{devtest.Room(fromB, 16)}, 16); n != 1 || err != nil {
				t.Fatalf("b.Write = %d, %v", n, err)
			}
			got := devtest.Read(t, s, 2, tun.Headroom, timeout)
			if !(bytes.Equal(got[0], fromA) && bytes.Equal(got[1], fromB) || bytes.Equal(got[0], fromB) && bytes.Equal(got[1], fromA)) {
				t.Fatalf("server read %x", got)
			}
			for c, addr := range map[*Device]netip.Addr{a: devtest.B4, b: devtest.B4b} {
				if ep, ok := s.Endpoint(addr); !ok || ep.Port() != c.LocalAddr().Port() {
					t.Fatalf("endpoint of %v = %v, %v; want port %d", addr, ep, ok, c.LocalAddr().Port())
				}
			}

			// One batch for both clients, and one for nobody.
			toB := pkt4in6(devtest.AFTR, devtest.B4b, 4)
			nobody := pkt4in6(devtest.AFTR, netip.MustParseAddr("2001:db8:b4::99"), 5)
			bufs := [][]byte{devtest.Room(toA, tun.Headroom), devtest.Room(nobody, tun.Headroom), devtest.Room(toB, tun.Headroom)}
			if n, err := s.Write(bufs, tun.Headroom); n != 2 || !errors.Is(err, ErrNoEndpoint) {
				t.Fatalf("server Write = %d, %v; want 2, ErrNoEndpoint", n, err)
			}
			if got := devtest.Read(t, a, 1, tun.Headroom, timeout); !bytes.Equal(got[0], toA) {
				t.Fatalf("a read %x, want %x", got[0], toA)
			}
			if got := devtest.Read(t, b, 1, 0, timeout); !bytes.Equal(got[0], toB) {
				t.Fatalf("b read %x, want %x", got[0], toB)
			}
			st := s.Stats()
			if st.RxPackets != 2 || st.TxPackets != 2 || st.DropNoEndpoint != 2 || st.Learned != 2 || st.Endpoints != 2 {
				t.Fatalf("server stats %+v", st)
			}
			if st := a.Stats(); st.RxPackets != 1 || st.TxPackets != 1 {
				t.Fatalf("client stats %+v", st)
			}
		})
	}
}

func TestClientDropsForeignAndServerDropsMalformed(t *testing.T) {
	s := listen(t, "127.0.0.1")
	c := dial(t, s)
	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()

	// The stranger talks to the client, then garbage to the server.
	if _, err := stranger.WriteToUDPAddrPort(pkt4in6(devtest.AFTR, devtest.B4, 1), c.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	for _, junk := range [][]byte{{0x45, 0}, make([]byte, 40), pkt4in6(devtest.B4b, devtest.AFTR, 2)[:50]} {
		if _, err := stranger.WriteToUDPAddrPort(junk, s.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	// Then real traffic, which must be what both read.
	from := pkt4in6(devtest.B4, devtest.AFTR, 3)
	if _, err := c.Write([][]byte{from}, 0); err != nil {
		t.Fatal(err)
	}
	if got := devtest.Read(t, s, 1, 0, timeout); !bytes.Equal(got[0], from) {
		t.Fatalf("server read %x", got[0])
	}
	to := pkt4in6(devtest.AFTR, devtest.B4, 4)
	if _, err := s.Write([][]byte{to}, 0); err != nil {
		t.Fatal(err)
	}
	if got := devtest.Read(t, c, 1, 0, timeout); !bytes.Equal(got[0], to) {
		t.Fatalf("client read %x", got[0])
	}
	if st := c.Stats(); st.DropForeign != 1 {
		t.Fatalf("client stats %+v", st)
	}
	if st := s.Stats(); st.DropMalformed != 3 || st.Endpoints != 1 {
		t.Fatalf("server stats %+v", st)
	}
	if _, ok := s.Endpoint(devtest.B4b); ok {
		t.Fatal("server learned from a malformed packet")
	}
}

func TestTooBig(t *testing.T) {
	s := listen(t, "127.0.0.1", WithMTU(1280))
	c, err := NewClient("127.0.0.1:0", s.LocalAddr().String(), WithMTU(1280))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big := devtest.IPv6(devtest.B4, devtest.AFTR, 4, 64, 0, make([]byte, 1300))
	if n, err := c.Write([][]byte{big}, 0); n != 0 || !errors.Is(err, tun.ErrTooBig) {
		t.Fatalf("Write = %d, %v; want ErrTooBig", n, err)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	devtest.LeakCheck(t)
	s, err := NewServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := s.Read([][]byte{make([]byte, 1500)}, []int{0}, 0)
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	s.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, tun.ErrClosed) {
			t.Fatalf("Read after Close: %v", err)
		}
	case <-time.After(timeout):
		t.Fatal("Close did not unblock Read")
	}
	if _, err := s.Write([][]byte{pkt4in6(devtest.AFTR, devtest.B4, 1)}, 0); !errors.Is(err, tun.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
}

// A client whose server is not there yet keeps reading: the ICMP port
// unreachable its sends provoke is not a Read error.
func TestClientOutlivesAbsentServer(t *testing.T) {
	s, err := NewServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := s.LocalAddr().String()
	s.Close()
	c, err := NewClient("", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 3 {
		c.Write([][]byte{pkt4in6(devtest.B4, devtest.AFTR, 1)}, 0)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read([][]byte{make([]byte, 1500)}, []int{0}, 0)
		errc <- err
	}()
	select {
	case err := <-errc:
		t.Fatalf("Read returned %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	c.Close()
	<-errc
}

// BenchmarkRoundTrip sends a 1280-octet packet from a client to the server
// and the server's answer back, over loopback.
func BenchmarkRoundTrip(b *testing.B) {
	s, err := NewServer("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c, err := NewClient("", s.LocalAddr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	up := [][]byte{devtest.Room(devtest.IPv6(devtest.B4, devtest.AFTR, 4, 64, 0, make([]byte, 1240)), tun.Headroom)}
	down := [][]byte{devtest.Room(devtest.IPv6(devtest.AFTR, devtest.B4, 4, 64, 0, make([]byte, 1240)), tun.Headroom)}
	rbufs := [][]byte{make([]byte, tun.Headroom+1500)}
	sizes := []int{0}
	b.SetBytes(2 * 1280)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(up, tun.Headroom); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Read(rbufs, sizes, tun.Headroom); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Write(down, tun.Headroom); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Read(rbufs, sizes, tun.Headroom); err != nil {
			b.Fatal(err)
		}
	}
}

// Handshake packets for TestBinding: the last three octets of the payload
// say claim or answer, the id, and whether the answer grants.
func handshake(src, dst netip.Addr, kind, id, granted byte) []byte {
	return devtest.IPv6(src, dst, 4, 64, 0, devtest.IPv4UDP(devtest.Host, devtest.Peer, 4000, 5351, []byte{kind, id, granted}))
}

func tail3(p []byte) (byte, byte, byte) { n := len(p); return p[n-3], p[n-2], p[n-1] }

func fakeClaim(p []byte) (uint64, bool) {
	k, id, _ := tail3(p)
	return uint64(id), k == 'C'
}

func fakeAnswer(p []byte) (uint64, bool, bool) {
	k, id, g := tail3(p)
	return uint64(id), k == 'A', g == 1
}

// With WithBinding, an address bound by a granted handshake keeps its
// endpoint: datagrams claiming its source from elsewhere are dropped and
// counted, a refused claim's answer goes to the claimant and moves
// nothing, and a fresh granted handshake moves it. (The issue: a local
// socket sending datagrams with a B4's IPv6 source hijacked its traffic.)
func TestBinding(t *testing.T) {
	devtest.LeakCheck(t)
	s := listen(t, "127.0.0.1", WithBinding(fakeClaim, fakeAnswer))
	victim, thief := dial(t, s), dial(t, s)
	send := func(c *Device, p []byte) {
		t.Helper()
		if n, err := c.Write([][]byte{devtest.Room(p, 0)}, 0); n != 1 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	answer := func(p []byte) {
		t.Helper()
		if n, err := s.Write([][]byte{devtest.Room(p, tun.Headroom)}, tun.Headroom); n != 1 || err != nil {
			t.Fatalf("server Write = %d, %v", n, err)
		}
	}
	endpoint := func() uint16 {
		ep, _ := s.Endpoint(devtest.B4)
		return ep.Port()
	}
	vPort, tPort := victim.LocalAddr().Port(), thief.LocalAddr().Port()

	// The victim binds by a granted handshake.
	send(victim, handshake(devtest.B4, devtest.AFTR, 'C', 1, 0))
	devtest.Read(t, s, 1, tun.Headroom, timeout)
	answer(handshake(devtest.AFTR, devtest.B4, 'A', 1, 1))
	devtest.Read(t, victim, 1, tun.Headroom, timeout)
	if endpoint() != vPort || s.Stats().Bound != 1 {
		t.Fatalf("after the handshake: endpoint port %d (victim %d), stats %+v", endpoint(), vPort, s.Stats())
	}

	// The thief's plain datagrams with the victim's source are dropped.
	for i := range 3 {
		send(thief, pkt4in6(devtest.B4, devtest.AFTR, uint16(i)))
	}
	// The thief's claim is refused: the answer goes to the thief only.
	send(thief, handshake(devtest.B4, devtest.AFTR, 'C', 2, 0))
	devtest.Read(t, s, 1, tun.Headroom, timeout)
	answer(handshake(devtest.AFTR, devtest.B4, 'A', 2, 0))
	devtest.Read(t, thief, 1, tun.Headroom, timeout)
	if endpoint() != vPort {
		t.Fatalf("thief moved the endpoint to port %d", endpoint())
	}
	if st := s.Stats(); st.DropUnbound != 3 {
		t.Errorf("DropUnbound = %d, want 3", st.DropUnbound)
	}
	// Traffic for the victim still reaches it.
	answer(pkt4in6(devtest.AFTR, devtest.B4, 9))
	devtest.Read(t, victim, 1, tun.Headroom, timeout)

	// A granted handshake from a new endpoint (the B4 moved) moves it.
	send(thief, handshake(devtest.B4, devtest.AFTR, 'C', 3, 0))
	devtest.Read(t, s, 1, tun.Headroom, timeout)
	answer(handshake(devtest.AFTR, devtest.B4, 'A', 3, 1))
	devtest.Read(t, thief, 1, tun.Headroom, timeout)
	if endpoint() != tPort || s.Stats().Bound != 2 {
		t.Fatalf("after a granted handshake from port %d: endpoint %d", tPort, endpoint())
	}
}
