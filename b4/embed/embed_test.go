package embed_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/b4"
	"github.com/lw4o6/lw4o6/b4/embed"
	"github.com/lw4o6/lw4o6/internal/localaftr"
)

// b4Addr is the embedded B4's IPv6 address.
var b4Addr = netip.MustParseAddr("2001:db8:b4::2")

// start runs an in-process AFTR and an embedded B4 provisioned by it.
func start(t *testing.T) (*embed.Node, *localaftr.AFTR) { return startB(t) }

func startB(t testing.TB) (*embed.Node, *localaftr.AFTR) {
	t.Helper()
	la, err := localaftr.Start(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(la.Close)
	cfg := b4.DefaultConfig()
	cfg.Addr, cfg.AFTR = b4Addr, localaftr.Addr
	cfg.AllowLoopback = true
	n, err := embed.New(embed.Config{B4: cfg, Access: la.Access})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return n, la
}

// echoTCP serves one TCP echo on ln per connection.
func echoTCP(t *testing.T, ln net.Listener) {
	t.Helper()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
}

func echoUDP(pc net.PacketConn) {
	go func() {
		buf := make([]byte, 2048)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:k], from)
		}
	}()
}

// roundTrip writes msg on c and reads it back.
func roundTrip(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo: got %q, want %q", got, msg)
	}
}

func TestDialTCPThroughB4(t *testing.T) {
	n, _ := start(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The server sees the AFTR's host egress, not the LAN host: the
	// connection went through the softwire.
	peers := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		peers <- c.RemoteAddr().String()
		defer c.Close()
		io.Copy(c, c)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := n.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.LocalAddr().String(); got[:len("198.18.0.2:")] != "198.18.0.2:" {
		t.Errorf("local address %s, want the LAN host 198.18.0.2", got)
	}
	roundTrip(t, c, bytes.Repeat([]byte("lw4o6 "), 20000))
	select {
	case p := <-peers:
		if p[:len("127.0.0.1:")] != "127.0.0.1:" {
			t.Errorf("server saw %s", p)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no connection accepted")
	}
}

func TestDialUDPThroughB4(t *testing.T) {
	n, _ := start(t)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	echoUDP(pc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := n.DialContext(ctx, "udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// UDP may lose a datagram on a loaded host: retry as a client would.
	buf := make([]byte, 100)
	for i := 0; ; i++ {
		if i == 30 {
			t.Fatal("no UDP echo in 30 tries")
		}
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		k, err := c.Read(buf)
		if err == nil {
			if string(buf[:k]) != "ping" {
				t.Fatalf("echo %q", buf[:k])
			}
			return
		}
	}
}

func TestDialRefusesNonIPv4(t *testing.T) {
	n, _ := start(t)
	for _, tc := range []struct{ network, addr string }{
		{"tcp", "example.com:80"}, {"tcp", "[2001:db8::1]:80"}, {"unix", "192.0.2.1:1"}, {"udp", "192.0.2.1"},
	} {
		if c, err := n.DialContext(context.Background(), tc.network, tc.addr); err == nil {
			c.Close()
			t.Errorf("DialContext(%q, %q) succeeded", tc.network, tc.addr)
		}
	}
}

func TestListenTCPReachableFromInternet(t *testing.T) {
	n, la := start(t)
	ln, err := n.Listen("tcp", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pub := ln.PublicAddr()
	st := n.Status()
	if st.Pool.Explicit != 1 {
		t.Errorf("explicit mappings %d while listening, want 1", st.Pool.Explicit)
	}
	if pub.Addr() != st.PublicIPv4 || !localaftr.Pool.Contains(pub.Addr()) || !st.Ports.Contains(pub.Port()) {
		t.Fatalf("public address %v: want %v and a port of %v", pub, st.PublicIPv4, st.Ports)
	}
	peers := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		peers <- c.RemoteAddr().String()
		defer c.Close()
		io.Copy(c, c)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := la.InternetHost.DialTCP(ctx, pub)
	if err != nil {
		t.Fatalf("dial %v from the Internet: %v", pub, err)
	}
	defer c.Close()
	roundTrip(t, c, []byte("hello from the Internet"))
	if p := <-peers; p[:len(localaftr.InternetHostAddr.String())+1] != localaftr.InternetHostAddr.String()+":" {
		t.Errorf("listener saw %s, want %v", p, localaftr.InternetHostAddr)
	}
	// Closing the listener deletes its mapping: the port is free again.
	ln.Close()
	if got := n.Status().Pool.Explicit; got != 0 {
		t.Errorf("explicit mappings %d after the listener's Close, want 0", got)
	}
}

func TestListenPacketReachableFromInternet(t *testing.T) {
	n, la := start(t)
	pc, err := n.ListenPacket("udp", ":5000")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	echoUDP(pc)
	pub := pc.PublicAddr()
	c, err := la.InternetHost.DialUDP(netip.AddrPortFrom(localaftr.InternetHostAddr, 0), pub)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 100)
	for i := 0; ; i++ {
		if i == 30 {
			t.Fatalf("no UDP echo from %v in 30 tries", pub)
		}
		c.Write([]byte("inbound"))
		c.SetReadDeadline(time.Now().Add(time.Second))
		k, err := c.Read(buf)
		if err == nil {
			if string(buf[:k]) != "inbound" {
				t.Fatalf("echo %q", buf[:k])
			}
			return
		}
	}
}

func TestListenRefusesBadAddr(t *testing.T) {
	n, _ := start(t)
	for _, a := range []string{"8080", "192.0.2.9:80", ":70000"} {
		if ln, err := n.Listen("tcp", a); err == nil {
			ln.Close()
			t.Errorf("Listen(%q) succeeded", a)
		}
	}
	if _, err := n.Listen("udp", ":1"); err == nil {
		t.Error(`Listen("udp") succeeded`)
	}
	if _, err := n.ListenPacket("tcp", ":1"); err == nil {
		t.Error(`ListenPacket("tcp") succeeded`)
	}
}

// TestCloseReleasesEverything: Close deletes the binding at the AFTR,
// closes listeners, and leaves no goroutine behind.
func TestCloseReleasesEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	la, err := localaftr.Start(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := b4.DefaultConfig()
	cfg.Addr, cfg.AFTR = b4Addr, localaftr.Addr
	n, err := embed.New(embed.Config{B4: cfg, Access: la.Access})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if len(la.AFTR.Bindings()) != 1 {
		t.Fatalf("AFTR bindings %d, want 1", len(la.AFTR.Bindings()))
	}
	ln, err := n.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan error, 1)
	go func() { _, err := ln.Accept(); accepted <- err }()
	if err := n.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-accepted:
		if err == nil {
			t.Error("Accept succeeded after Close")
		}
	case <-time.After(30 * time.Second):
		t.Error("Accept still blocked after Close")
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(la.AFTR.Bindings()) != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if b := la.AFTR.Bindings(); len(b) != 0 {
		t.Errorf("AFTR still holds %+v after Close", b)
	}
	if _, err := n.DialContext(ctx, "tcp", "127.0.0.1:1"); err == nil {
		t.Error("DialContext after Close succeeded")
	}
	la.Close()
	deadline = time.Now().Add(30 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutine leak: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStartTimesOutWithoutAFTR(t *testing.T) {
	la, err := localaftr.Start(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer la.Close()
	cfg := b4.DefaultConfig()
	// An AFTR address nobody answers for: the AFTR drops what is not for it.
	cfg.Addr, cfg.AFTR = b4Addr, netip.MustParseAddr("2001:db8::99")
	n, err := embed.New(embed.Config{B4: cfg, Access: la.Access, ProvisionTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Start(context.Background()); err == nil {
		t.Fatal("Start succeeded with no AFTR")
	}
}

// TestListenerSurvivesReprovisioning: the AFTR loses the binding, the B4
// provisions again, and the listener is reachable at its public address
// again (the NAT keeps the explicit mapping when the same set comes back;
// the listener's renewal makes it anew after any status change).
func TestListenerSurvivesReprovisioning(t *testing.T) {
	n, la := start(t)
	ln, err := n.Listen("tcp", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	echoTCP(t, ln)
	if !la.AFTR.RemoveBinding(b4Addr) {
		t.Fatal("the AFTR held no binding")
	}
	// The B4 learns of the loss from the AFTR's answer to its next packet
	// (ICMPv6 1/5, RFC 7596 §5.1): send some, until it has provisioned
	// again.
	deadline := time.Now().Add(60 * time.Second)
	for n.Status().Provisionings < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("not provisioned again: %+v", n.Status())
		}
		if c, err := n.DialContext(context.Background(), "udp", "127.0.0.1:9"); err == nil {
			c.Write([]byte("x"))
			c.Close()
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := la.InternetHost.DialTCP(ctx, ln.PublicAddr())
		cancel()
		if err == nil {
			roundTrip(t, c, []byte("after reprovisioning"))
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v unreachable after reprovisioning: %v (status %+v)", ln.PublicAddr(), err, n.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	la, err := localaftr.Start(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer la.Close()
	good := b4.DefaultConfig()
	good.Addr, good.AFTR = b4Addr, localaftr.Addr
	noAFTR := good
	noAFTR.AFTR = netip.Addr{}
	for name, c := range map[string]embed.Config{
		"nil access":          {B4: good},
		"host off the LAN":    {B4: good, Access: la.Access, HostAddr: netip.MustParsePrefix("198.19.0.2/24")},
		"host is the gateway": {B4: good, Access: la.Access, HostAddr: netip.MustParsePrefix("198.18.0.1/24")},
		"IPv6 host":           {B4: good, Access: la.Access, HostAddr: netip.MustParsePrefix("2001:db8::2/64")},
		"no AFTR address":     {B4: noAFTR, Access: la.Access},
	} {
		if n, err := embed.New(c); err == nil {
			n.Close()
			t.Errorf("%s: New succeeded", name)
		}
	}
	n, err := embed.New(embed.Config{B4: good, Access: la.Access})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, err := n.Listen("tcp", ":80"); !errors.Is(err, embed.ErrNotStarted) {
		t.Errorf("Listen before Start: %v, want ErrNotStarted", err)
	}
	if _, err := n.DialContext(context.Background(), "tcp", "127.0.0.1:1"); !errors.Is(err, embed.ErrNotStarted) {
		t.Errorf("DialContext before Start: %v, want ErrNotStarted", err)
	}
}
