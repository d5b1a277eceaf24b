package socks5

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var loopback4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := waitLeaks(5 * time.Second); len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "leaked goroutines after all tests:\n%s\n", strings.Join(leaked, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// packageGoroutines lists goroutines running code of this package (the
// server or test helpers), other than the caller.
func packageGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "lw4o6/stack/socks5.") &&
			!strings.Contains(g, "socks5.packageGoroutines") &&
			!strings.Contains(g, "testing.tRunner") && // test bodies and their cleanups
			!strings.Contains(g, "socks5.TestMain") {
			out = append(out, g)
		}
	}
	return out
}

func waitLeaks(d time.Duration) []string {
	deadline := time.Now().Add(d)
	for {
		leaked := packageGoroutines()
		if len(leaked) == 0 || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkLeaks fails t if goroutines of this package outlive it. Call it
// first so that its cleanup runs last.
func checkLeaks(t testing.TB) {
	t.Helper()
	t.Cleanup(func() {
		if leaked := waitLeaks(5 * time.Second); len(leaked) > 0 {
			t.Errorf("%d leaked goroutines:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
	})
}

// netDialer is a Dialer backed by the host's net package, limited to
// 127.0.0.1 for tests: other destinations are refused.
type netDialer struct {
	mu     sync.Mutex
	dialed []netip.AddrPort
}

func (d *netDialer) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	d.mu.Lock()
	d.dialed = append(d.dialed, dst)
	d.mu.Unlock()
	if dst.Addr() != loopback4 {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp4", dst.String())
}

func (d *netDialer) ListenUDP(ctx context.Context) (net.PacketConn, error) {
	return net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback4, 0)))
}

func (d *netDialer) Dialed() []netip.AddrPort {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]netip.AddrPort(nil), d.dialed...)
}

// refusingDialer refuses everything.
type refusingDialer struct{}

func (refusingDialer) DialTCP(context.Context, netip.AddrPort) (net.Conn, error) {
	return nil, syscall.ECONNREFUSED
}

func (refusingDialer) ListenUDP(context.Context) (net.PacketConn, error) {
	return nil, syscall.EACCES
}

// fakeResolver answers from a table; unknown names are not found.
type fakeResolver struct {
	mu       sync.Mutex
	names    map[string][]netip.Addr
	networks []string
}

func (r *fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.networks = append(r.networks, network)
	if ips, ok := r.names[host]; ok {
		return ips, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// startServer runs srv.Serve on a loopback listener until the test ends.
func startServer(t testing.TB, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		select {
		case err := <-done:
			if !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve = %v, want ErrServerClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return ln.Addr().String()
}

// tcpServer accepts on 127.0.0.1 and runs handle for each connection until
// the test ends.
func tcpServer(t testing.TB, handle func(*net.TCPConn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return addrPortOf(ln.Addr())
}

// echoServer echoes each connection and half-closes after the peer does.
func echoServer(t testing.TB) netip.AddrPort {
	return tcpServer(t, func(c *net.TCPConn) {
		if _, err := io.Copy(c, c); err == nil {
			c.CloseWrite()
		}
		io.Copy(io.Discard, c)
	})
}

// udpEcho echoes datagrams on 127.0.0.1 until the test ends.
func udpEcho(t testing.TB) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback4, 0)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1<<16)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			pc.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return addrPortOf(pc.LocalAddr())
}

// closedPort returns a loopback TCP port with no listener.
func closedPort(t testing.TB) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := addrPortOf(ln.Addr())
	ln.Close()
	return ap
}

// Client side of the protocol.

func greeting() []byte { return []byte{version5, 1, methodNoAuth} }

func ipRequest(cmd byte, dst netip.AddrPort) []byte {
	b := []byte{version5, cmd, 0}
	a := dst.Addr()
	if !a.IsValid() {
		a = netip.IPv4Unspecified()
	}
	if a.Is4() {
		b = append(b, atypIPv4)
		b = append(b, a.AsSlice()...)
	} else {
		v := a.As16()
		b = append(b, atypIPv6)
		b = append(b, v[:]...)
	}
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

func nameRequest(cmd byte, name string, port uint16) []byte {
	b := []byte{version5, cmd, 0, atypDomain, byte(len(name))}
	b = append(b, name...)
	return binary.BigEndian.AppendUint16(b, port)
}

func dialServer(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn)
}

// readMethod reads the method selection reply.
func readMethod(t testing.TB, c net.Conn) byte {
	t.Helper()
	var b [2]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatalf("method reply: %v", err)
	}
	if b[0] != version5 {
		t.Fatalf("method reply version %d", b[0])
	}
	return b[1]
}

// readReply reads a request reply.
func readReply(c net.Conn) (reply, netip.AddrPort, error) {
	var h [4]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return 0, netip.AddrPort{}, err
	}
	if h[0] != version5 || h[2] != 0 {
		return 0, netip.AddrPort{}, fmt.Errorf("bad reply header % x", h)
	}
	var buf [259]byte
	a, err := readAddress(c, h[3], buf[:])
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	if a.name != "" {
		return 0, netip.AddrPort{}, fmt.Errorf("reply with a name %q", a.name)
	}
	return reply(h[1]), netip.AddrPortFrom(a.ip, a.port), nil
}

// doRequest negotiates no authentication, sends req and returns the reply.
func doRequest(t testing.TB, c net.Conn, req []byte) (reply, netip.AddrPort) {
	t.Helper()
	if _, err := c.Write(append(greeting(), req...)); err != nil {
		t.Fatal(err)
	}
	if m := readMethod(t, c); m != methodNoAuth {
		t.Fatalf("method %#x", m)
	}
	rep, bnd, err := readReply(c)
	if err != nil {
		t.Fatalf("reply: %v", err)
	}
	return rep, bnd
}

// udpDatagram builds a client UDP request datagram.
func udpDatagram(frag byte, dst netip.AddrPort, payload []byte) []byte {
	b := appendAddrPort([]byte{0, 0, frag}, dst)
	return append(b, payload...)
}

// readAllTimeout reads c to EOF, failing on error or after d.
func readAllTimeout(t testing.TB, c net.Conn, d time.Duration) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	var buf bytes.Buffer
	_, err := io.Copy(&buf, c)
	if err != nil {
		t.Fatalf("read to EOF: %v (after %d bytes)", err, buf.Len())
	}
	return buf.Bytes()
}
