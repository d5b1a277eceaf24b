// Package lab builds a whole lw4o6 deployment in one process on stack/sim:
// one AFTR, N B4s each with a LAN host, and an Internet host with a TCP
// service, a UDP echo and ping — every host a real gVisor stack, every link
// in memory, no privileges. cmd/lw4o6-lab and the end-to-end tests use it.
//
// For scale (failover.go), B4s may be bare: no LAN network and no LAN host,
// their LAN side a function call each way (Node.Inject, Config.LANRecv),
// with a raw UDP echo responder at EchoAddr on the Internet side in place of
// a gVisor host. The AFTR can be stopped and a new instance started on the
// same addresses (StopAFTR, StartAFTR), as a restarted daemon would be, and
// B4s added and removed while it runs (AddB4, RemoveB4: nodes.go).
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
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

// B4Addr is the IPv6 address of B4 i (from 0): 2001:db8:b4:N::1 with N =
// i+1, each B4 in its own /64 as each subscriber is on an access network,
// so that the AFTR's per-prefix limits (ICMPv6 errors) treat them as the
// separate subscribers they stand for.
func B4Addr(i int) netip.Addr {
	a := netip.MustParseAddr("2001:db8:b4::1").As16()
	a[6], a[7] = byte((i+1)>>8), byte(i+1)
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

// MaxB4s bounds the lab's B4s (memory: BENCHMARKS.md, "Failover").
const MaxB4s = 4000

// LANProbeAddr is the source of the packets Node.Inject sends on a hosted
// B4's LAN (beside the LAN host): replies to it reach Config.LANRecv.
func LANProbeAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18 + byte(i>>8&1), byte(i), 3})
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
	AFTR func(*aftr.Config)
	B4   func(i int, c *b4.Config)
	// Bare picks the B4s that get no LAN network and no LAN host (nil:
	// none). Their LAN side is Node.Inject one way and LANRecv the other.
	Bare func(i int) bool
	// LANRecv, if set, receives every packet a bare B4 sends to its LAN,
	// and every packet a hosted B4 sends to LANProbeAddr. It is called from
	// the B4's goroutines, must not block and must not retain pkt.
	LANRecv func(i int, pkt []byte)
	Logger  *slog.Logger
}

// Node is one B4 with its LAN.
type Node struct {
	B4 *b4.B4
	// Index is i of B4Addr(i) and the Config functions' i.
	Index int
	Addr  netip.Addr
	LAN   *sim.Network // nil for a bare B4
	Host  *sim.Host    // nil for a bare B4
	port  *sim.Port    // the B4's attachment to the access network
	// probe is the attachment at LANProbeAddr of a hosted B4's LAN (with
	// Config.LANRecv).
	probe *sim.Port
	// stop ends the B4's Run, which closes done as it returns; closers
	// release the rest once it has (nodes.go).
	stop    context.CancelFunc
	done    chan struct{}
	closers []func()
}

// Bare reports whether the node has no LAN network and host.
func (n *Node) Bare() bool { return n.LAN == nil }

// Inject sends an IPv4 packet into the B4 from its LAN: straight to the B4
// for a bare node (pkt is then rewritten in place: pass a fresh one), from
// LANProbeAddr's attachment for a hosted one with Config.LANRecv (copied).
// A hosted node without Config.LANRecv has no such attachment: nothing is
// sent.
func (n *Node) Inject(pkt []byte) {
	switch {
	case n.LAN == nil:
		n.B4.FromLAN(pkt)
	case n.probe != nil:
		n.probe.Send(pkt)
	}
}

// lanFunc is a bare B4's LAN: what the B4 sends there goes to a function.
type lanFunc func(pkt []byte)

func (f lanFunc) Send(pkt []byte) { f(pkt) }

// World is a running lab.
type World struct {
	Access, Internet *sim.Network
	// AFTR is the running AFTR instance (the new one after StartAFTR; nil
	// between StopAFTR and StartAFTR). Read it from the goroutine that
	// restarts it.
	AFTR *aftr.AFTR
	// Nodes are the running B4s in the order started: Nodes[i] is B4 i
	// until RemoveB4 takes one out (Node.Index). AddB4 and RemoveB4
	// change it: read it from the goroutine that calls them.
	Nodes  []*Node
	Server *Server
	Echo   *Echo
	pool   netip.Prefix
	cfg    Config
	log    *slog.Logger
	next   int // the index AddB4 gives next

	// The AFTR's attachments outlive its instances: a restarted AFTR is
	// on the same addresses, and packets reach whichever instance cur holds
	// (none while it is down: dropped, as by a dead box).
	aftrCfg              aftr.Config
	accessPort, inetPort *sim.Port
	cur                  atomic.Pointer[aftr.AFTR]
	aftrStop             context.CancelFunc
	aftrDone             chan struct{}
	pcpMeter             atomic.Pointer[RateMeter]

	// ctx is the B4s' (each runs under a child of it); cancel ends all.
	ctx     context.Context
	cancel  context.CancelFunc
	closers []func()
}

// New builds and starts the lab; Close stops it.
func New(cfg Config) (w *World, err error) {
	if cfg.B4s < 1 || cfg.B4s > MaxB4s {
		return nil, fmt.Errorf("lab: %d B4s: want 1 to %d", cfg.B4s, MaxB4s)
	}
	ports := cfg.PortsPerB4
	if ports == 0 {
		ports = aftr.DefaultConfig().PortsPerB4
	}
	if err := CheckPool(cfg.Pool, ports, cfg.B4s); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w = &World{Access: sim.NewNetwork("access"), Internet: sim.NewNetwork("internet"), pool: cfg.Pool, cfg: cfg, log: log}
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
	w.aftrCfg = ac
	w.accessPort, err = w.Access.Attach("aftr", w.aftrFromAccess, netip.PrefixFrom(AFTRAddr, 128))
	if err != nil {
		return nil, err
	}
	w.inetPort, err = w.Internet.Attach("aftr", func(b []byte) {
		if a := w.cur.Load(); a != nil {
			a.FromInternet(b)
		}
	}, cfg.Pool, netip.PrefixFrom(AFTRIPv4, 32))
	if err != nil {
		return nil, err
	}

	srv, err := NewServer(w.Internet, ServerAddr, log.With("node", "server"))
	if err != nil {
		return nil, err
	}
	w.Server = srv
	w.closers = append(w.closers, srv.Close)
	if w.Echo, err = NewEcho(w.Internet, EchoAddr); err != nil {
		return nil, err
	}

	w.ctx, w.cancel = context.WithCancel(context.Background())
	// Close runs closers in order: the B4s stop first (their deletes
	// reach the AFTR), then the AFTR, the networks and the Internet side,
	// and the B4s' own parts last.
	w.closers = append([]func(){w.stopNodes, w.StopAFTR}, w.closers...)
	w.closers = append(w.closers, w.closeNodes)
	if err := w.StartAFTR(); err != nil {
		return nil, err
	}
	for i := 0; i < cfg.B4s; i++ {
		if _, err := w.startNode(i); err != nil {
			return nil, err
		}
	}
	w.next = cfg.B4s
	return w, nil
}

// aftrFromAccess hands a packet from the access network to the running AFTR
// instance, counting PCP requests for the meter first.
func (w *World) aftrFromAccess(b []byte) {
	a := w.cur.Load()
	if a == nil {
		return
	}
	if m := w.pcpMeter.Load(); m != nil && isPCPRequest(b) {
		m.Add(time.Now())
	}
	a.FromAccess(b)
}

// StartAFTR starts a new AFTR instance with the lab's AFTR configuration on
// the same access and Internet attachments (the same addresses): a
// restarted daemon. It holds whatever state aftr.New gives it (none without
// a journal). The previous instance must have been stopped.
func (w *World) StartAFTR() error {
	if w.aftrStop != nil {
		return errors.New("lab: the AFTR is running")
	}
	a, err := aftr.New(w.aftrCfg, w.accessPort, w.inetPort)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	w.AFTR, w.aftrStop, w.aftrDone = a, cancel, done
	w.cur.Store(a)
	go func() { a.Run(ctx); close(done) }()
	return nil
}

// StopAFTR stops the running AFTR instance, as a crash or a stop of the
// daemon would: from now on packets to its addresses are dropped, its
// timers stop, and (when aftr.AFTR has a Close method: the journal) it is
// closed. Its state goes with it. A stopped AFTR is a no-op to stop.
func (w *World) StopAFTR() {
	if w.aftrStop == nil {
		return
	}
	a := w.cur.Swap(nil)
	w.aftrStop()
	<-w.aftrDone
	// aftr.AFTR gains Close (its journal's) on the journal branch; this
	// compiles with and without it.
	if c, ok := any(a).(io.Closer); ok {
		if err := c.Close(); err != nil && w.aftrCfg.Logger != nil {
			w.aftrCfg.Logger.Warn("closing the stopped AFTR", "err", err)
		}
	}
	w.AFTR, w.aftrStop, w.aftrDone = nil, nil, nil
}

// addNode builds B4 i (not yet running). On error it has released what it
// built.
func (w *World) addNode(i int) (_ *Node, err error) {
	cfg, log := w.cfg, w.log
	n := &Node{Index: i, Addr: B4Addr(i)}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	bare := cfg.Bare != nil && cfg.Bare(i)
	if !bare {
		n.LAN = sim.NewNetwork(fmt.Sprintf("lan%d", i))
		n.closers = append(n.closers, n.LAN.Close)
	}
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
	n.closers = append(n.closers, ap.Detach)
	var lan b4.Link
	if bare {
		recv := cfg.LANRecv
		if recv == nil {
			recv = func(int, []byte) {}
		}
		lan = lanFunc(func(p []byte) { recv(i, p) })
	} else {
		lp, err := n.LAN.Attach("b4", func(p []byte) { <-ready; b.FromLAN(p) }, netip.MustParsePrefix("0.0.0.0/0"))
		if err != nil {
			return nil, err
		}
		lan = lp
	}
	b, err = b4.New(bc, lan, ap)
	close(ready)
	if err != nil {
		return nil, err
	}
	n.B4, n.port = b, ap
	n.closers = append(n.closers, b.Close)
	if bare {
		return n, nil
	}
	mtu := bc.TunnelMTU
	if cfg.LANMTU != 0 {
		mtu = cfg.LANMTU
	}
	h, err := sim.NewHost(n.LAN, fmt.Sprintf("host-%d", i), mtu, log, netip.PrefixFrom(LANHostAddr(i), 24))
	if err != nil {
		return nil, err
	}
	n.Host = h
	n.closers = append(n.closers, h.Close)
	if recv := cfg.LANRecv; recv != nil {
		n.probe, err = n.LAN.Attach("probe", func(p []byte) { recv(i, p) }, netip.PrefixFrom(LANProbeAddr(i), 32))
		if err != nil {
			return nil, err
		}
	}
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
		for {
			// The channel before the status: a change between the two
			// would otherwise be waited for in vain.
			ch := n.B4.Changed()
			if n.B4.Status().Provisioned {
				break
			}
			select {
			case <-ch:
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

// Pool is the AFTR's IPv4 pool.
func (w *World) Pool() netip.Prefix { return w.pool }
