// Package lab builds a whole lw4o6 deployment in one process on stack/sim:
// one AFTR, N B4s each with a LAN host, and an Internet host with a TCP
// service, a UDP echo and ping — every host a real gVisor stack, every link
// in memory, no privileges. cmd/lw4o6-lab and the end-to-end tests use it.
package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/lw4o6/lw4o6/aftr"
	"github.com/lw4o6/lw4o6/b4"
	"github.com/lw4o6/lw4o6/stack/pcap"
	"github.com/lw4o6/lw4o6/stack/sim"
)

// Addresses of the lab (documentation and benchmark ranges only).
var (
	AFTRAddr   = netip.MustParseAddr("2001:db8::1")
	AFTRIPv4   = netip.MustParseAddr("203.0.113.1")
	ServerAddr = netip.MustParseAddr("198.51.100.10")
)

// B4Addr is the IPv6 address of B4 i (from 0).
func B4Addr(i int) netip.Addr {
	a := netip.MustParseAddr("2001:db8:b4::").As16()
	a[14], a[15] = byte((i+1)>>8), byte(i+1)
	return netip.AddrFrom16(a)
}

// LANHostAddr and LANGateway are the addresses of B4 i's LAN (198.18.0.0/15,
// the benchmark range, one /24 per B4).
func LANHostAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18 + byte(i>>8&1), byte(i), 2})
}

// LANGateway is B4 i's own LAN address.
func LANGateway(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18 + byte(i>>8&1), byte(i), 1})
}

// Config sizes the lab.
type Config struct {
	B4s        int
	Pool       netip.Prefix
	PortsPerB4 int
	// PcapDir, if set, receives access.pcap and internet.pcap.
	PcapDir string
	// LANMTU is the LAN hosts' MTU; 0 means the B4's tunnel MTU, so that
	// nothing needs fragmenting.
	LANMTU uint32
	// AFTR adjusts the AFTR configuration before it is built.
	AFTR   func(*aftr.Config)
	B4     func(i int, c *b4.Config)
	Logger *slog.Logger
}

// Node is one B4 with its LAN.
type Node struct {
	B4   *b4.B4
	Addr netip.Addr
	LAN  *sim.Network
	Host *sim.Host
	port *sim.Port // the B4's attachment to the access network
}

// World is a running lab.
type World struct {
	Access, Internet *sim.Network
	AFTR             *aftr.AFTR
	Nodes            []*Node
	Server           *Server
	pool             netip.Prefix

	cancel  context.CancelFunc
	done    chan struct{}
	closers []func()
}

// New builds and starts the lab; Close stops it.
func New(cfg Config) (w *World, err error) {
	if cfg.B4s < 1 || cfg.B4s > 500 {
		return nil, fmt.Errorf("lab: %d B4s: want 1 to 500", cfg.B4s)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w = &World{Access: sim.NewNetwork("access"), Internet: sim.NewNetwork("internet"), done: make(chan struct{}), pool: cfg.Pool}
	w.closers = append(w.closers, w.Access.Close, w.Internet.Close)
	defer func() {
		if err != nil {
			w.Close()
		}
	}()
	if cfg.PcapDir != "" {
		if err := w.tap(cfg.PcapDir); err != nil {
			return nil, err
		}
	}

	// The AFTR: its IPv6 address on the access network, the pool (and its
	// own IPv4 address) routed to it on the Internet.
	ac := aftr.DefaultConfig()
	ac.Addr, ac.IPv4Addr, ac.Pools = AFTRAddr, AFTRIPv4, []netip.Prefix{cfg.Pool}
	if cfg.PortsPerB4 != 0 {
		ac.PortsPerB4 = cfg.PortsPerB4
	}
	ac.Logger = log.With("node", "aftr")
	if cfg.AFTR != nil {
		cfg.AFTR(&ac)
	}
	var a *aftr.AFTR
	ready := make(chan struct{})
	accessPort, err := w.Access.Attach("aftr", func(b []byte) { <-ready; a.FromAccess(b) }, netip.PrefixFrom(AFTRAddr, 128))
	if err != nil {
		return nil, err
	}
	inetPort, err := w.Internet.Attach("aftr", func(b []byte) { <-ready; a.FromInternet(b) }, cfg.Pool, netip.PrefixFrom(AFTRIPv4, 32))
	if err != nil {
		return nil, err
	}
	a, err = aftr.New(ac, accessPort, inetPort)
	close(ready)
	if err != nil {
		return nil, err
	}
	w.AFTR = a

	srv, err := NewServer(w.Internet, ServerAddr, log.With("node", "server"))
	if err != nil {
		return nil, err
	}
	w.Server = srv
	w.closers = append(w.closers, srv.Close)

	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	running := 1
	go func() { a.Run(ctx); w.done <- struct{}{} }()
	for i := 0; i < cfg.B4s; i++ {
		n, err := w.addNode(ctx, i, cfg, log)
		if err != nil {
			cancel()
			for ; running > 0; running-- {
				<-w.done
			}
			w.cancel = nil
			return nil, err
		}
		w.Nodes = append(w.Nodes, n)
		running++
		go func() { n.B4.Run(ctx); w.done <- struct{}{} }()
	}
	w.closers = append([]func(){func() {
		cancel()
		for ; running > 0; running-- {
			<-w.done
		}
	}}, w.closers...)
	return w, nil
}

func (w *World) addNode(ctx context.Context, i int, cfg Config, log *slog.Logger) (*Node, error) {
	n := &Node{Addr: B4Addr(i), LAN: sim.NewNetwork(fmt.Sprintf("lan%d", i))}
	w.closers = append(w.closers, n.LAN.Close)
	bc := b4.DefaultConfig()
	bc.Addr, bc.AFTR, bc.Gateway = n.Addr, AFTRAddr, LANGateway(i)
	bc.Logger = log.With("node", fmt.Sprintf("b4-%d", i))
	if cfg.B4 != nil {
		cfg.B4(i, &bc)
	}
	var b *b4.B4
	ready := make(chan struct{})
	ap, err := w.Access.Attach(fmt.Sprintf("b4-%d", i), func(p []byte) { <-ready; b.FromAccess(p) }, netip.PrefixFrom(n.Addr, 128))
	if err != nil {
		return nil, err
	}
	lp, err := n.LAN.Attach("b4", func(p []byte) { <-ready; b.FromLAN(p) }, netip.MustParsePrefix("0.0.0.0/0"))
	if err != nil {
		return nil, err
	}
	b, err = b4.New(bc, lp, ap)
	close(ready)
	if err != nil {
		return nil, err
	}
	n.B4, n.port = b, ap
	w.closers = append(w.closers, b.Close)
	mtu := bc.TunnelMTU
	if cfg.LANMTU != 0 {
		mtu = cfg.LANMTU
	}
	h, err := sim.NewHost(n.LAN, fmt.Sprintf("host-%d", i), mtu, log, netip.PrefixFrom(LANHostAddr(i), 24))
	if err != nil {
		return nil, err
	}
	n.Host = h
	w.closers = append(w.closers, h.Close)
	return n, nil
}

func (w *World) tap(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("lab: pcap dir: %w", err)
	}
	for _, t := range []struct {
		n    *sim.Network
		file string
	}{{w.Access, "access.pcap"}, {w.Internet, "internet.pcap"}} {
		f, err := os.Create(filepath.Join(dir, t.file))
		if err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		pw, err := pcap.NewWriter(f)
		if err != nil {
			f.Close()
			return fmt.Errorf("lab: %w", err)
		}
		t.n.SetTap(pw)
		// Close after the networks stop sending.
		w.closers = append(w.closers, func() { pw.Close() })
	}
	return nil
}

// WaitProvisioned waits until every B4 holds a port set.
func (w *World) WaitProvisioned(ctx context.Context) error {
	for _, n := range w.Nodes {
		for !n.B4.Status().Provisioned {
			select {
			case <-n.B4.Changed():
			case <-ctx.Done():
				return fmt.Errorf("lab: %v not provisioned: %w", n.Addr, ctx.Err())
			}
		}
	}
	return nil
}

// Close stops everything and flushes the captures.
func (w *World) Close() {
	for _, c := range w.closers {
		c()
	}
	w.closers = nil
}

var errExchange = errors.New("lab: exchange failed")

var _ = time.Second

// Pool is the AFTR's IPv4 pool.
func (w *World) Pool() netip.Prefix { return w.pool }
