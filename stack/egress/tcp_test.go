package egress

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// TestTCPTransfer sends 1 MB each way through the egress with a half-close
// in each direction: the server answers only after the B4-side host's FIN
// arrived, and the host reads the answer to the server's FIN.
func TestTCPTransfer(t *testing.T) {
	checkGoroutines(t)
	h := newHarness(t, Config{})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	up, down := pattern(1<<20, 1), pattern(1<<20, 2)

	type result struct {
		remote net.Addr
		got    []byte
		err    error
	}
	srv := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srv <- result{err: err}
			return
		}
		defer c.Close()
		got, err := io.ReadAll(c) // until the B4-side FIN
		if err == nil {
			_, err = c.Write(down)
		}
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		srv <- result{remote: c.RemoteAddr(), got: got, err: err}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	c, err := h.host.DialTCP(ctx, netip.AddrPortFrom(farAddr, port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(up)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	r := <-srv
	if r.err != nil {
		t.Fatalf("server: %v", r.err)
	}
	if !bytes.Equal(r.got, up) {
		t.Errorf("server got %d bytes, want the %d sent", len(r.got), len(up))
	}
	if !bytes.Equal(got, down) {
		t.Errorf("host got %d bytes, want the %d sent", len(got), len(down))
	}
	if !isLoopback(r.remote) {
		t.Errorf("server saw %v, want a loopback address", r.remote)
	}
	eventually(t, "tcp flow to end", func() bool { return h.e.Stats().TCP.Active == 0 })
	st := h.e.Stats().TCP
	if st.Opened != 1 || st.Failed != 0 || st.BytesOut != 1<<20 || st.BytesIn != 1<<20 {
		t.Errorf("stats %+v", st)
	}
}

// TestTCPEcho relays both directions at once, many round trips.
func TestTCPEcho(t *testing.T) {
	checkGoroutines(t)
	h := newHarness(t, Config{})
	ln := echoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := h.host.DialTCP(ctx, netip.AddrPortFrom(farAddr, uint16(ln.Addr().(*net.TCPAddr).Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1000)
	for i := range 50 {
		msg := pattern(1000, byte(i))
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, msg) {
			t.Fatalf("round %d: echo differs", i)
		}
	}
}

// echoServer is a loopback TCP echo server closed at the end of the test.
func echoServer(tb testing.TB) net.Listener {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	tb.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln
}

// TestTCPRefused: the egress dials before it answers the SYN, so a closed
// port reaches the B4-side host as an RST, at once.
func TestTCPRefused(t *testing.T) {
	checkGoroutines(t)
	h := newHarness(t, Config{})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	c, err := h.host.DialTCP(ctx, netip.AddrPortFrom(farAddr, port))
	if err == nil {
		c.Close()
		t.Fatal("dial succeeded")
	}
	if !contains(err, "refused") {
		t.Fatalf("dial: %v, want connection refused", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusal took %v", d)
	}
	eventually(t, "the failed flow counted", func() bool { return h.e.Stats().TCP.Failed == 1 })
	if st := h.e.Stats().TCP; st.Opened != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestCloseAbortsFlows closes the egress under open TCP and UDP flows: the
// host sockets close and no goroutine is left behind.
func TestCloseAbortsFlows(t *testing.T) {
	checkGoroutines(t)
	h := newHarness(t, Config{Ping: true})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	uc := udpEchoServer(t)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var conns []net.Conn
	for range 3 {
		c, err := h.host.DialTCP(ctx, netip.AddrPortFrom(farAddr, uint16(ln.Addr().(*net.TCPAddr).Port)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		conns = append(conns, s)
	}
	u, err := h.host.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(farAddr, uint16(uc.LocalAddr().(*net.UDPAddr).Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := u.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	pings := uint64(0)
	if canPing() == nil {
		h.e.Inject(echoRequestPacket(1, 1, []byte("x")))
		pings = 1
	}
	eventually(t, "the flows to open", func() bool {
		st := h.e.Stats()
		return st.TCP.Active == 3 && st.UDP.Active == 1 && st.Ping.Active == pings
	})

	h.e.Close()
	for _, s := range conns {
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := s.Read(make([]byte, 1)); err != io.EOF && !contains(err, "reset") {
			t.Errorf("server side after Close: %v, want EOF", err)
		}
	}
	if st := h.e.Stats(); st.TCP.Active != 0 || st.UDP.Active != 0 || st.Ping.Active != 0 {
		t.Errorf("after Close: %+v", st)
	}
	h.e.Inject([]byte{0x45}) // after Close: ignored
}

// TestCloseDuringHandshake: a B4 that sends a SYN and never answers the
// SYN-ACK leaves the forwarder blocked in CreateEndpoint; Close must not
// wait for the handshake to time out.
func TestCloseDuringHandshake(t *testing.T) {
	checkGoroutines(t)
	h := newHarness(t, Config{})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	synAcks := make(chan struct{}, 16)
	tap := func(p []byte) {
		if tcp := header.TCP(header.IPv4(p).Payload()); header.IPv4(p).Protocol() == uint8(header.TCPProtocolNumber) &&
			tcp.Flags().Contains(header.TCPFlagSyn|header.TCPFlagAck) {
			select {
			case synAcks <- struct{}{}:
			default:
			}
		}
	}
	h.tap.Store(&tap)
	// From an address the B4-side host does not own, so nobody answers.
	h.e.Inject(synPacket(netip.MustParseAddrPort("192.0.2.99:40000"), netip.AddrPortFrom(farAddr, uint16(ln.Addr().(*net.TCPAddr).Port))))
	select {
	case <-synAcks:
	case <-time.After(5 * time.Second):
		t.Fatal("no SYN-ACK")
	}
	start := time.Now()
	h.e.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
}

// synPacket is a TCP SYN from src to dst.
func synPacket(src, dst netip.AddrPort) []byte {
	b := make([]byte, header.IPv4MinimumSize+header.TCPMinimumSize)
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(b)),
		TTL:         64,
		Protocol:    uint8(header.TCPProtocolNumber),
		SrcAddr:     tcpip.AddrFrom4(src.Addr().As4()),
		DstAddr:     tcpip.AddrFrom4(dst.Addr().As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(b[header.IPv4MinimumSize:])
	tcp.Encode(&header.TCPFields{
		SrcPort:    src.Port(),
		DstPort:    dst.Port(),
		SeqNum:     1000,
		DataOffset: header.TCPMinimumSize,
		Flags:      header.TCPFlagSyn,
		WindowSize: 65535,
	})
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), header.TCPMinimumSize)
	tcp.SetChecksum(^tcp.CalculateChecksum(xsum))
	return b
}

// counting is a HostDialer that counts its calls.
type counting struct {
	redirect
	dials atomic.Int64
}

func (c *counting) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c.dials.Add(1)
	return c.redirect.DialContext(ctx, network, address)
}

// TestUnreachableDestinations: flows to addresses that cannot be on the
// Internet (link-local, as the cloud metadata service) are refused without
// asking the host.
func TestUnreachableDestinations(t *testing.T) {
	checkGoroutines(t)
	d := &counting{redirect: redirect{from: farAddr, to: lo}}
	h := newHarness(t, Config{Dialer: d})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := h.host.DialTCP(ctx, netip.MustParseAddrPort("169.254.169.254:80")); err == nil {
		c.Close()
		t.Error("TCP dial to 169.254.169.254 succeeded")
	}
	u, err := h.host.DialUDP(netip.AddrPort{}, netip.MustParseAddrPort("169.254.169.254:53"))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Write([]byte("x"))
	eventually(t, "the UDP flow to fail", func() bool { return h.e.Stats().UDP.Failed == 1 })
	if st := h.e.Stats(); st.TCP.Failed != 1 || st.TCP.Opened != 0 || st.UDP.Opened != 0 || d.dials.Load() != 0 {
		t.Errorf("stats %+v, %d dials", st, d.dials.Load())
	}
}

func TestReachable(t *testing.T) {
	for a, want := range map[string]bool{
		"198.51.100.10": true, "8.8.8.8": true, "10.1.2.3": true,
		"127.0.0.1": false, "169.254.169.254": false, "224.0.0.1": false,
		"255.255.255.255": false, "0.0.0.0": false, "0.1.2.3": false,
	} {
		if got := reachable(netip.MustParseAddr(a)); got != want {
			t.Errorf("reachable(%s) = %v", a, got)
		}
	}
}
