package socks5

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestConnectLargeTransfer(t *testing.T) {
	checkLeaks(t)
	echo := echoServer(t)
	addr := startServer(t, &Server{Dialer: &netDialer{}})
	c := dialServer(t, addr)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if rep, _ := doRequest(t, c, ipRequest(cmdConnect, echo)); rep != repSucceeded {
		t.Fatalf("reply %v", rep)
	}

	data := make([]byte, 16<<20+123)
	rand.Read(data)
	werr := make(chan error, 1)
	go func() {
		// Odd-sized writes, then half-close.
		for b := data; len(b) > 0; {
			n := min(len(b), 70001)
			if _, err := c.Write(b[:n]); err != nil {
				werr <- err
				return
			}
			b = b[n:]
		}
		werr <- c.CloseWrite()
	}()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		t.Fatalf("read after %d bytes: %v", n, err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if n != int64(len(data)) {
		t.Fatalf("echoed %d bytes, sent %d", n, len(data))
	}
	want := sha256.Sum256(data)
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("echoed data differs")
	}
}

func TestConnectBoundAddress(t *testing.T) {
	checkLeaks(t)
	peers := make(chan netip.AddrPort, 1)
	dst := tcpServer(t, func(c *net.TCPConn) {
		peers <- addrPortOf(c.RemoteAddr())
		io.Copy(io.Discard, c)
	})
	addr := startServer(t, &Server{Dialer: &netDialer{}})
	c := dialServer(t, addr)
	rep, bnd := doRequest(t, c, ipRequest(cmdConnect, dst))
	if rep != repSucceeded {
		t.Fatalf("reply %v", rep)
	}
	if peer := <-peers; bnd != peer {
		t.Fatalf("BND %v, destination saw the connection from %v", bnd, peer)
	}
}

// Half-close both ways: the client's EOF reaches the destination, which
// then answers and closes; and the destination's EOF reaches the client
// while the client can still send.
func TestConnectHalfClose(t *testing.T) {
	checkLeaks(t)
	addr := startServer(t, &Server{Dialer: &netDialer{}})

	t.Run("client first", func(t *testing.T) {
		dst := tcpServer(t, func(c *net.TCPConn) {
			n, err := io.Copy(io.Discard, c)
			fmt.Fprintf(c, "got %d %v", n, err)
		})
		c := dialServer(t, addr)
		if rep, _ := doRequest(t, c, ipRequest(cmdConnect, dst)); rep != repSucceeded {
			t.Fatalf("reply %v", rep)
		}
		c.Write(make([]byte, 1<<20))
		c.CloseWrite()
		if got := string(readAllTimeout(t, c, 10*time.Second)); got != "got 1048576 <nil>" {
			t.Fatalf("destination said %q", got)
		}
	})

	t.Run("destination first", func(t *testing.T) {
		got := make(chan string, 1)
		dst := tcpServer(t, func(c *net.TCPConn) {
			c.Write([]byte("hello"))
			c.CloseWrite()
			b, err := io.ReadAll(c)
			got <- fmt.Sprintf("%s %v", b, err)
		})
		c := dialServer(t, addr)
		if rep, _ := doRequest(t, c, ipRequest(cmdConnect, dst)); rep != repSucceeded {
			t.Fatalf("reply %v", rep)
		}
		if b := readAllTimeout(t, c, 10*time.Second); string(b) != "hello" {
			t.Fatalf("read %q", b)
		}
		c.Write([]byte("world"))
		c.CloseWrite()
		select {
		case s := <-got:
			if s != "world <nil>" {
				t.Fatalf("destination read %q", s)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("destination read nothing")
		}
	})
}

// A client may send its greeting, request and first data at once.
func TestConnectPipelined(t *testing.T) {
	checkLeaks(t)
	echo := echoServer(t)
	addr := startServer(t, &Server{Dialer: &netDialer{}})
	c := dialServer(t, addr)
	msg := append(append(greeting(), ipRequest(cmdConnect, echo)...), "ping"...)
	c.Write(msg)
	c.CloseWrite()
	if m := readMethod(t, c); m != methodNoAuth {
		t.Fatalf("method %#x", m)
	}
	if rep, _, err := readReply(c); err != nil || rep != repSucceeded {
		t.Fatalf("reply %v %v", rep, err)
	}
	if b := readAllTimeout(t, c, 10*time.Second); string(b) != "ping" {
		t.Fatalf("echo %q", b)
	}
}

func TestConnectRefused(t *testing.T) {
	checkLeaks(t)
	addr := startServer(t, &Server{Dialer: &netDialer{}})
	c := dialServer(t, addr)
	rep, bnd := doRequest(t, c, ipRequest(cmdConnect, closedPort(t)))
	if rep != repConnectionRefused {
		t.Fatalf("reply %v, want connection refused", rep)
	}
	if bnd != netip.AddrPortFrom(netip.IPv4Unspecified(), 0) {
		t.Fatalf("BND %v on failure", bnd)
	}
	readAllTimeout(t, c, 5*time.Second) // then closed
}

func TestConnectDomain(t *testing.T) {
	checkLeaks(t)
	echo := echoServer(t)
	res := &fakeResolver{names: map[string][]netip.Addr{
		"echo.test":   {loopback4},
		"multi.test":  {netip.MustParseAddr("127.0.0.2"), loopback4}, // the test dialer refuses 127.0.0.2
		"v6only.test": {netip.IPv6Loopback()},
		"mapped.test": {netip.MustParseAddr("::ffff:127.0.0.1")},
	}}
	d := &netDialer{}
	addr := startServer(t, &Server{Dialer: d, Resolver: res})
	for _, tc := range []struct {
		name string
		want reply
	}{
		{"echo.test", repSucceeded},
		{"multi.test", repSucceeded},
		{"mapped.test", repSucceeded},
		{"127.0.0.1", repSucceeded}, // IP literal
		{"nx.test", repHostUnreachable},
		{"v6only.test", repHostUnreachable}, // no IPv4 address
		{"::1", repAddressNotSupported},     // IPv6 literal without AllowIPv6
	} {
		c := dialServer(t, addr)
		rep, _ := doRequest(t, c, nameRequest(cmdConnect, tc.name, echo.Port()))
		if rep != tc.want {
			t.Errorf("%s: reply %v, want %v", tc.name, rep, tc.want)
		}
		if rep == repSucceeded {
			c.Write([]byte(tc.name))
			c.CloseWrite()
			if b := readAllTimeout(t, c, 5*time.Second); string(b) != tc.name {
				t.Errorf("%s: echo %q", tc.name, b)
			}
		}
		c.Close()
	}
	for _, n := range res.networks {
		if n != "ip4" {
			t.Errorf("resolver asked for %q without AllowIPv6", n)
		}
	}
	for _, ap := range d.Dialed() {
		if !ap.Addr().Is4() {
			t.Errorf("dialled %v", ap)
		}
	}
}

func TestConnectDomainNoResolver(t *testing.T) {
	checkLeaks(t)
	echo := echoServer(t)
	addr := startServer(t, &Server{Dialer: &netDialer{}})
	c := dialServer(t, addr)
	if rep, _ := doRequest(t, c, nameRequest(cmdConnect, "echo.test", echo.Port())); rep != repAddressNotSupported {
		t.Fatalf("reply %v, want address type not supported", rep)
	}
	c = dialServer(t, addr)
	if rep, _ := doRequest(t, c, nameRequest(cmdConnect, "127.0.0.1", echo.Port())); rep != repSucceeded {
		t.Fatalf("IP literal name: reply %v", rep)
	}
}

func TestIPv6Destination(t *testing.T) {
	checkLeaks(t)
	v6 := netip.AddrPortFrom(netip.IPv6Loopback(), 9)

	d := &netDialer{}
	addr := startServer(t, &Server{Dialer: d})
	c := dialServer(t, addr)
	if rep, _ := doRequest(t, c, ipRequest(cmdConnect, v6)); rep != repAddressNotSupported {
		t.Fatalf("AllowIPv6=false: reply %v, want address type not supported", rep)
	}
	if got := d.Dialed(); len(got) != 0 {
		t.Fatalf("dialled %v", got)
	}

	// IPv4-mapped IPv6 is IPv4.
	echo := echoServer(t)
	c = dialServer(t, addr)
	mapped := netip.AddrPortFrom(netip.AddrFrom16(loopback4.As16()), echo.Port())
	if rep, _ := doRequest(t, c, ipRequest(cmdConnect, mapped)); rep != repSucceeded {
		t.Fatalf("IPv4-mapped: reply %v", rep)
	}
	if got := d.Dialed(); len(got) != 1 || got[0] != echo {
		t.Fatalf("dialled %v, want %v", got, echo)
	}

	// With AllowIPv6 the dialer gets the IPv6 destination (and refuses it).
	d6 := &netDialer{}
	addr6 := startServer(t, &Server{Dialer: d6, AllowIPv6: true})
	c = dialServer(t, addr6)
	if rep, _ := doRequest(t, c, ipRequest(cmdConnect, v6)); rep != repConnectionRefused {
		t.Fatalf("AllowIPv6=true: reply %v", rep)
	}
	if got := d6.Dialed(); len(got) != 1 || got[0] != v6 {
		t.Fatalf("dialled %v, want %v", got, v6)
	}
}

func TestUnsupportedCommand(t *testing.T) {
	checkLeaks(t)
	addr := startServer(t, &Server{Dialer: &netDialer{}})
	for _, cmd := range []byte{cmdBind, 0x00, 0x04, 0xff} {
		c := dialServer(t, addr)
		if rep, _ := doRequest(t, c, ipRequest(cmd, netip.AddrPortFrom(loopback4, 80))); rep != repCommandNotSupported {
			t.Errorf("command %#x: reply %v", cmd, rep)
		}
		readAllTimeout(t, c, 5*time.Second)
	}
}

func TestMethodNegotiation(t *testing.T) {
	checkLeaks(t)
	addr := startServer(t, &Server{Dialer: &netDialer{}})
	for _, tc := range []struct {
		name  string
		in    []byte
		reply []byte // whole output before EOF
	}{
		{"SOCKS4", []byte{4, 1}, nil},
		{"HTTP", []byte("GE"), nil},
		{"no methods", []byte{5, 0}, []byte{5, 0xff}},
		{"no methods, then junk", []byte{5, 0, 1, 2, 3, 4, 5}, []byte{5, 0xff}},
		{"user/pass only", []byte{5, 1, 2}, []byte{5, 0xff}},
		{"GSSAPI and user/pass", []byte{5, 2, 1, 2}, []byte{5, 0xff}},
		{"no auth among others", append([]byte{5, 3, 1, 2, 0}, ipRequest(0x09, netip.AddrPortFrom(loopback4, 1))...),
			[]byte{5, 0, 5, byte(repCommandNotSupported), 0, 1, 0, 0, 0, 0, 0, 0}},
		{"request version 4", append(greeting(), 4, 1, 0, 1, 127, 0, 0, 1, 0, 80, 1, 2, 3),
			[]byte{5, 0, 5, byte(repGeneralFailure), 0, 1, 0, 0, 0, 0, 0, 0}},
	} {
		c := dialServer(t, addr)
		c.Write(tc.in)
		got := readAllTimeout(t, c, 5*time.Second)
		if !bytes.Equal(got, tc.reply) {
			t.Errorf("%s: got % x, want % x", tc.name, got, tc.reply)
		}
	}
}

// Every truncation of a valid exchange, and malformed requests, end the
// session promptly, with a reply where one can be given.
func TestMalformedRequests(t *testing.T) {
	checkLeaks(t)
	srv := &Server{Dialer: refusingDialer{}, Resolver: &fakeResolver{}}
	defer srv.Close()
	run := func(in []byte) ([]byte, error) {
		t.Helper()
		client, server := net.Pipe()
		defer client.Close()
		done := make(chan error, 1)
		go func() { done <- srv.ServeConn(context.Background(), &eofConn{Conn: server, n: len(in)}) }()
		out := make(chan []byte, 1)
		go func() { b, _ := io.ReadAll(client); out <- b }()
		client.Write(in)
		select {
		case err := <-done:
			client.Close()
			return <-out, err
		case <-time.After(5 * time.Second):
			t.Fatalf("ServeConn(% x) did not return", in)
		}
		return nil, nil
	}

	valid := append(greeting(), nameRequest(cmdConnect, "a.test", 80)...)
	for i := range len(valid) {
		got, err := run(valid[:i])
		if err == nil {
			t.Errorf("prefix %d: ServeConn returned nil", i)
		}
		if i >= 3 && !bytes.HasPrefix(got, []byte{5, 0}) {
			t.Errorf("prefix %d: no method reply: % x", i, got)
		}
		if len(got) > 2 {
			t.Errorf("prefix %d: unexpected reply % x", i, got)
		}
	}
	for _, tc := range []struct {
		name string
		req  []byte
		want reply
	}{
		{"unknown ATYP", []byte{5, 1, 0, 9, 1, 2, 3, 4, 0, 80}, repAddressNotSupported},
		{"ATYP 0", []byte{5, 1, 0, 0}, repAddressNotSupported},
		{"empty name", []byte{5, 1, 0, atypDomain, 0, 0, 80}, repGeneralFailure},
		{"unknown name", nameRequest(cmdConnect, "nx.test", 80), repHostUnreachable},
		{"refused", ipRequest(cmdConnect, netip.MustParseAddrPort("192.0.2.1:80")), repConnectionRefused},
		{"UDP socket refused", ipRequest(cmdUDPAssociate, netip.AddrPortFrom(netip.IPv4Unspecified(), 0)), repNotAllowed},
		{"BIND", ipRequest(cmdBind, netip.MustParseAddrPort("192.0.2.1:80")), repCommandNotSupported},
		{"version 0", []byte{0, 1, 0, 1, 1, 2, 3, 4, 0, 80}, repGeneralFailure},
	} {
		got, err := run(append(greeting(), tc.req...))
		want := []byte{5, 0, 5, byte(tc.want), 0, 1, 0, 0, 0, 0, 0, 0}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: got % x, want % x", tc.name, got, want)
		}
		if replyFor(err) != tc.want {
			t.Errorf("%s: ServeConn = %v", tc.name, err)
		}
	}
}

// eofConn reads as EOF once n bytes have been read, as if the client had
// half-closed after sending them; writes still reach the peer.
type eofConn struct {
	net.Conn
	mu sync.Mutex
	n  int
}

func (c *eofConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	left := c.n
	c.mu.Unlock()
	if left <= 0 {
		return 0, io.EOF
	}
	n, err := c.Conn.Read(b[:min(len(b), left)])
	c.mu.Lock()
	c.n -= n
	c.mu.Unlock()
	return n, err
}

func TestReplyFor(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want reply
	}{
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, repConnectionRefused},
		{syscall.ENETUNREACH, repNetworkUnreachable},
		{syscall.EHOSTUNREACH, repHostUnreachable},
		{syscall.EHOSTDOWN, repHostUnreachable},
		{syscall.ETIMEDOUT, repTTLExpired},
		{context.DeadlineExceeded, repTTLExpired},
		{fmt.Errorf("dial: %w", os.ErrDeadlineExceeded), repTTLExpired},
		{syscall.EACCES, repNotAllowed},
		{&net.DNSError{Err: "no such host", IsNotFound: true}, repHostUnreachable},
		// gVisor's gonet flattens tcpip errors into strings.
		{&net.OpError{Op: "connect", Net: "tcp", Err: errors.New("connection was refused")}, repConnectionRefused},
		{&net.OpError{Op: "connect", Net: "tcp", Err: errors.New("network is unreachable")}, repNetworkUnreachable},
		{&net.OpError{Op: "connect", Net: "tcp", Err: errors.New("no route to host")}, repHostUnreachable},
		{&net.OpError{Op: "connect", Net: "tcp", Err: errors.New("host is down")}, repHostUnreachable},
		{&net.OpError{Op: "connect", Net: "tcp", Err: errors.New("operation timed out")}, repTTLExpired},
		{context.Canceled, repGeneralFailure},
		{errors.New("something else"), repGeneralFailure},
		{failf(repCommandNotSupported, nil), repCommandNotSupported},
	} {
		if got := replyFor(tc.err); got != tc.want {
			t.Errorf("replyFor(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestCloseEndsSessions(t *testing.T) {
	checkLeaks(t)
	echo := echoServer(t)
	uecho := udpEcho(t)
	srv := &Server{Dialer: &netDialer{}, IdleTimeout: -1}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	tcp := dialServer(t, ln.Addr().String())
	if rep, _ := doRequest(t, tcp, ipRequest(cmdConnect, echo)); rep != repSucceeded {
		t.Fatalf("connect: %v", rep)
	}
	ctrl := dialServer(t, ln.Addr().String())
	rep, bnd := doRequest(t, ctrl, ipRequest(cmdUDPAssociate, netip.AddrPort{}))
	if rep != repSucceeded {
		t.Fatalf("associate: %v", rep)
	}
	// A session served by ServeConn directly, still in its handshake.
	a, b := net.Pipe()
	defer b.Close()
	direct := make(chan error, 1)
	go func() { direct <- srv.ServeConn(context.Background(), a) }()

	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve = %v", err)
	}
	if err := <-direct; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ServeConn = %v", err)
	}
	for _, c := range []net.Conn{tcp, ctrl} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("session still open after Close: %v", err)
		}
	}
	// The UDP relay socket is gone: a connected socket sees the ICMP error.
	u, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(bnd))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Write(udpDatagram(0, uecho, []byte("x")))
	u.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := u.Read(make([]byte, 64)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("relay socket after Close: read %v", err)
	}

	// Closed for good.
	if err := srv.ServeConn(context.Background(), b); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ServeConn after Close = %v", err)
	}
	ln2, _ := net.Listen("tcp4", "127.0.0.1:0")
	if err := srv.Serve(ln2); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Close = %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestServeReturnsWhenListenerCloses(t *testing.T) {
	checkLeaks(t)
	srv := &Server{Dialer: &netDialer{}}
	defer srv.Close()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	time.Sleep(10 * time.Millisecond)
	ln.Close()
	select {
	case err := <-served:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Serve = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
}

func TestServeConnContext(t *testing.T) {
	checkLeaks(t)
	echo := echoServer(t)
	srv := &Server{Dialer: &netDialer{}}
	defer srv.Close()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		done <- srv.ServeConn(ctx, c)
	}()
	c := dialServer(t, ln.Addr().String())
	if rep, _ := doRequest(t, c, ipRequest(cmdConnect, echo)); rep != repSucceeded {
		t.Fatalf("reply %v", rep)
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Log("ServeConn returned nil after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn did not return after its context was cancelled")
	}
	readAllTimeout(t, c, 5*time.Second)
}

func TestIdleTimeout(t *testing.T) {
	checkLeaks(t)
	echo := echoServer(t)
	uecho := udpEcho(t)
	const idle = 200 * time.Millisecond
	addr := startServer(t, &Server{Dialer: &netDialer{}, IdleTimeout: idle})

	// Busy sessions live on.
	c := dialServer(t, addr)
	if rep, _ := doRequest(t, c, ipRequest(cmdConnect, echo)); rep != repSucceeded {
		t.Fatalf("reply %v", rep)
	}
	buf := make([]byte, 4)
	for i := range 12 {
		time.Sleep(idle / 4)
		c.Write([]byte(strconv.Itoa(1000 + i)))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("busy session ended after %d round trips: %v", i, err)
		}
	}
	// Idle ones end.
	start := time.Now()
	readAllTimeout(t, c, 5*time.Second)
	if d := time.Since(start); d < idle*3/4 || d > 10*idle {
		t.Fatalf("idle session closed after %v", d)
	}

	ctrl := dialServer(t, addr)
	rep, bnd := doRequest(t, ctrl, ipRequest(cmdUDPAssociate, netip.AddrPort{}))
	if rep != repSucceeded {
		t.Fatalf("associate: %v", rep)
	}
	u, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(bnd))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for range 6 {
		time.Sleep(idle / 4)
		u.Write(udpDatagram(0, uecho, []byte("keep")))
		u.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := u.Read(make([]byte, 64)); err != nil {
			t.Fatalf("busy association: %v", err)
		}
	}
	start = time.Now()
	readAllTimeout(t, ctrl, 5*time.Second)
	if d := time.Since(start); d < idle*3/4 || d > 10*idle {
		t.Fatalf("idle association closed after %v", d)
	}
}

// A nil Dialer fails requests instead of panicking.
func TestNilDialer(t *testing.T) {
	checkLeaks(t)
	addr := startServer(t, &Server{})
	for _, req := range [][]byte{
		ipRequest(cmdConnect, netip.AddrPortFrom(loopback4, 80)),
		ipRequest(cmdUDPAssociate, netip.AddrPort{}),
	} {
		c := dialServer(t, addr)
		if rep, _ := doRequest(t, c, req); rep != repGeneralFailure {
			t.Errorf("reply %v", rep)
		}
	}
}

// Many concurrent sessions ending in every way, then Close: nothing of the
// server may be left running.
func TestChurnNoLeaks(t *testing.T) {
	checkLeaks(t)
	echo := echoServer(t)
	uecho := udpEcho(t)
	srv := &Server{Dialer: &netDialer{}}
	addr := startServer(t, srv)
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp4", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			switch i % 6 {
			case 0: // complete echo with half-close
				c.Write(append(append(greeting(), ipRequest(cmdConnect, echo)...), make([]byte, 100000)...))
				c.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, c)
			case 1: // abort mid-transfer
				c.Write(append(greeting(), ipRequest(cmdConnect, echo)...))
				c.Write(make([]byte, 50000))
				c.(*net.TCPConn).SetLinger(0)
			case 2: // truncated handshake
				c.Write([]byte{5, 1, 0, 5, 1})
			case 3: // UDP association, one datagram, then close
				rep, bnd := doRequest(t, c, ipRequest(cmdUDPAssociate, netip.AddrPort{}))
				if rep != repSucceeded {
					t.Errorf("associate: %v", rep)
					return
				}
				u, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(bnd))
				if err != nil {
					t.Error(err)
					return
				}
				u.Write(udpDatagram(0, uecho, []byte("x")))
				u.Close()
			case 4: // refused
				doRequest(t, c, ipRequest(cmdConnect, netip.MustParseAddrPort("127.0.0.2:1")))
			case 5: // left open: Close must end it
				doRequest(t, c, ipRequest(cmdConnect, echo))
			}
		}()
	}
	wg.Wait()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
}
