package egress

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/netstack"
)

// The B4-side host and the Internet host it talks to. The test dialer sends
// everything for farAddr to loopback, so nothing leaves the machine.
var (
	b4Addr  = netip.MustParseAddr("192.0.2.5")
	farAddr = netip.MustParseAddr("198.51.100.10")
	lo      = netip.MustParseAddr("127.0.0.1")
)

// link is one direction of the softwire between the B4-side host and the
// egress: a queue and a pump goroutine, so that neither stack is re-entered
// from inside the other's Output. A full queue drops, like a real link.
type link struct {
	ch      chan []byte
	stop    chan struct{}
	done    chan struct{}
	deliver func([]byte)
}

func newLink() *link {
	return &link{ch: make(chan []byte, 4096), stop: make(chan struct{}), done: make(chan struct{})}
}

func (l *link) send(p []byte) {
	select {
	case l.ch <- p:
	default:
	}
}

func (l *link) start(deliver func([]byte)) {
	go func() {
		defer close(l.done)
		for {
			select {
			case p := <-l.ch:
				deliver(p)
			case <-l.stop:
				return
			}
		}
	}()
}

func (l *link) close() {
	close(l.stop)
	<-l.done
}

// harness is an egress wired to a B4-side host at 192.0.2.5.
type harness struct {
	e    *Egress
	host *netstack.Stack
	// tap, if set, sees every packet the egress outputs.
	tap atomic.Pointer[func([]byte)]
}

func newHarness(tb testing.TB, cfg Config) *harness {
	tb.Helper()
	toHost, toE := newLink(), newLink()
	h := &harness{}
	cfg.Output = func(p []byte) {
		if tap := h.tap.Load(); tap != nil {
			(*tap)(p)
		}
		toHost.send(p)
	}
	if cfg.Dialer == nil {
		cfg.Dialer = &redirect{from: farAddr, to: lo}
	}
	e, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	host, err := netstack.New(netstack.Options{
		Name:   "b4host",
		MTU:    e.cfg.MTU,
		Addrs:  []netip.Prefix{netip.PrefixFrom(b4Addr, 24)},
		Output: toE.send,
	})
	if err != nil {
		tb.Fatal(err)
	}
	toE.start(e.Inject)
	toHost.start(host.Inject)
	tb.Cleanup(func() {
		e.Close()
		host.Close()
		toE.close()
		toHost.close()
	})
	h.e, h.host = e, host
	return h
}

// redirect is a HostDialer that sends flows for one address to another and
// rewrites the ping socket's addresses both ways.
type redirect struct {
	NetDialer
	from, to netip.Addr
}

func (r *redirect) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if ap, err := netip.ParseAddrPort(address); err == nil && ap.Addr() == r.from {
		address = netip.AddrPortFrom(r.to, ap.Port()).String()
	}
	return r.NetDialer.DialContext(ctx, network, address)
}

func (r *redirect) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	pc, err := r.NetDialer.ListenPacket(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &redirectPC{PacketConn: pc, r: r}, nil
}

type redirectPC struct {
	net.PacketConn
	r *redirect
}

func swap(a net.Addr, from, to netip.Addr) net.Addr {
	if ua, ok := a.(*net.UDPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ua.IP); ok && ip.Unmap() == from {
			return &net.UDPAddr{IP: to.AsSlice(), Port: ua.Port}
		}
	}
	return a
}

func (p *redirectPC) WriteTo(b []byte, a net.Addr) (int, error) {
	return p.PacketConn.WriteTo(b, swap(a, p.r.from, p.r.to))
}

func (p *redirectPC) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := p.PacketConn.ReadFrom(b)
	return n, swap(a, p.r.to, p.r.from), err
}

// checkGoroutines fails the test if goroutines started during it are still
// running once every later cleanup has run (wireguard-go's
// goroutineLeakCheck). Call it before creating anything.
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutine leak: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func isLoopback(a net.Addr) bool {
	ap, err := netip.ParseAddrPort(a.String())
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// pattern is n deterministic, non-repeating-looking bytes.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

func contains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }
