package egress

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// udpEchoServer is a loopback UDP echo server closed at the end of the test.
// It records the sources it saw.
func udpEchoServer(tb testing.TB) *net.UDPConn {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	tb.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1<<16)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if !from.IP.IsLoopback() {
				continue // only loopback sources are answered
			}
			c.WriteToUDP(buf[:n], from)
		}
	}()
	return c
}

func TestUDPEcho(t *testing.T) {
	checkGoroutines(t)
	h := newHarness(t, Config{})
	srv := udpEchoServer(t)
	dst := netip.AddrPortFrom(farAddr, uint16(srv.LocalAddr().(*net.UDPAddr).Port))

	// Sizes include datagrams the stacks fragment and reassemble on both
	// sides of the egress. The clients take turns: the B4-side host is a
	// gVisor stack, whose fragments all carry IP ID 0 (see udp.go), so two
	// of its fragmented datagrams in flight at once would collide before
	// they reach the egress.
	const sum = 1 + 100 + 1400 + 4000 + 20000
	buf := make([]byte, 1<<16)
	for client := range 2 {
		u, err := h.host.DialUDP(netip.AddrPort{}, dst)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		u.SetDeadline(time.Now().Add(10 * time.Second))
		for i, size := range []int{1, 100, 1400, 4000, 20000} {
			msg := pattern(size, byte(10*client+i))
			if _, err := u.Write(msg); err != nil {
				t.Fatal(err)
			}
			n, err := u.Read(buf)
			if err != nil {
				t.Fatalf("client %d, %d bytes: %v", client, size, err)
			}
			if !bytes.Equal(buf[:n], msg) {
				t.Errorf("client %d: echo of %d bytes differs (%d back)", client, size, n)
			}
		}
	}
	// The egress counts a datagram after its write returns (to the host
	// one way, into the stack the other), which can be after the echo
	// arrived.
	eventually(t, "udp byte counts", func() bool {
		st := h.e.Stats().UDP
		return st.BytesOut == 2*sum && st.BytesIn == 2*sum
	})
	st := h.e.Stats().UDP
	if st.Opened != 2 || st.Active != 2 || st.Failed != 0 || st.BytesIn != 2*sum {
		t.Errorf("stats %+v", st)
	}
}

// TestUDPReplyFragments: large replies to two flows between the same pair
// of addresses, in flight at once, must reach the B4-side host intact; the
// egress's fragments carry a nonzero ID and no DF.
func TestUDPReplyFragments(t *testing.T) {
	checkGoroutines(t)
	h := newHarness(t, Config{})
	var bad atomic.Int64
	tap := func(p []byte) {
		ip := header.IPv4(p)
		if ip.More() || ip.FragmentOffset() != 0 {
			if ip.ID() == 0 || ip.Flags()&header.IPv4FlagDontFragment != 0 {
				bad.Add(1)
			}
		}
	}
	h.tap.Store(&tap)

	// The server answers each request with 20000 bytes of its first byte.
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 100)
		for {
			n, from, err := srv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if n > 0 {
				srv.WriteToUDP(bytes.Repeat(buf[:1], 20000), from)
			}
		}
	}()
	dst := netip.AddrPortFrom(farAddr, uint16(srv.LocalAddr().(*net.UDPAddr).Port))
	var wg sync.WaitGroup
	for client := range 2 {
		u, err := h.host.DialUDP(netip.AddrPort{}, dst)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		wg.Go(func() {
			u.SetDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 1<<16)
			for i := range 20 {
				b := byte(2*i + client)
				if _, err := u.Write([]byte{b}); err != nil {
					t.Error(err)
					return
				}
				n, err := u.Read(buf)
				if err != nil {
					t.Errorf("client %d round %d: %v", client, i, err)
					return
				}
				if !bytes.Equal(buf[:n], bytes.Repeat([]byte{b}, 20000)) {
					t.Errorf("client %d round %d: reply differs", client, i)
				}
			}
		})
	}
	wg.Wait()
	if n := bad.Load(); n != 0 {
		t.Errorf("%d fragments with ID 0 or DF", n)
	}
}

// TestUDPIdleExpiry: a silent flow is closed after UDPIdle, and the next
// datagram of the same 4-tuple opens a new one.
func TestUDPIdleExpiry(t *testing.T) {
	checkGoroutines(t)
	h := newHarness(t, Config{UDPIdle: 200 * time.Millisecond})
	srv := udpEchoServer(t)
	u, err := h.host.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(farAddr, uint16(srv.LocalAddr().(*net.UDPAddr).Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	echo := func() {
		t.Helper()
		u.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := u.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := u.Read(make([]byte, 10)); err != nil {
			t.Fatal(err)
		}
	}
	echo()
	// Traffic within the idle time keeps the flow.
	for range 4 {
		time.Sleep(100 * time.Millisecond)
		echo()
	}
	if st := h.e.Stats().UDP; st.Opened != 1 || st.Expired != 0 {
		t.Fatalf("flow expired while in use: %+v", st)
	}
	eventually(t, "udp flow to expire", func() bool {
		st := h.e.Stats().UDP
		return st.Active == 0 && st.Expired == 1
	})
	echo()
	if st := h.e.Stats().UDP; st.Opened != 2 || st.Active != 1 {
		t.Errorf("after expiry: %+v", st)
	}
}
