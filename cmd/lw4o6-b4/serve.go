package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/lw4o6/lw4o6/b4"
	"github.com/lw4o6/lw4o6/internal/devlink"
	"github.com/lw4o6/lw4o6/internal/ifsetup"
	"github.com/lw4o6/lw4o6/stack/netstack"
	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/socks5"
	"github.com/lw4o6/lw4o6/tun"
)

// The SOCKS5 front end's LAN host and the B4's gateway address when there is
// no TUN: a /24 of the benchmark range that never leaves the process.
var (
	socksHost    = netip.MustParseAddr("198.18.255.2")
	socksGateway = netip.MustParseAddr("198.18.255.1")
)

// serveB4 runs one B4 on the plan provisioning.go made, until ctx ends;
// started, if set, is given the B4 once it is built.
func serveB4(ctx context.Context, o *options, pl plan, stdout io.Writer, log *slog.Logger, started func(*b4.B4)) error {
	aftrAddr, src := pl.aftr, pl.src
	var err error
	if !src.IsValid() {
		if src, err = sourceFor(aftrAddr); err != nil {
			return err
		}
	}
	access, err := openAccess(o, src, aftrAddr, log)
	if err != nil {
		return err
	}
	// printStatus returns on ctx: end it too when serve returns on an error
	// (bb.Run's), or wg.Wait never returns. A device pump that fails ends
	// it with its error as the cause, which serveB4 returns: the daemon
	// stops rather than running on with no data path. It ends before the
	// devices close, so that their pumps know the close for a shutdown.
	ctx, fail := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	var closers []func()
	defer func() {
		fail(nil)
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		wg.Wait()
	}()
	closers = append(closers, func() { access.Close() })
	accessStats := devlink.NewStats("access")
	var lanStats *devlink.Stats // with --tun

	cfg := b4.DefaultConfig()
	cfg.Addr, cfg.AFTR = src, aftrAddr
	cfg.Gateway = socksGateway
	if o.tunAddr.IsValid() {
		cfg.Gateway = o.tunAddr.Addr()
	}
	cfg.TunnelMTU = uint32(o.mtu - packet.IPv6HeaderLen)
	cfg.PortSetSize = uint16(o.portSetSize)
	cfg.Lifetime = o.lifetime
	cfg.MaxSets, cfg.GrowAt, cfg.ShrinkAfter = o.maxSets, o.growAt, o.shrinkAfter
	cfg.Logger = log
	o.lan.apply(&cfg)
	cfg.Static = pl.static // DHCPv6 S46; --ipv4/--port-set (failover.apply) win
	if cfg.Nonce, err = o.failover.nonce(o.nonceFile, src.String(), log); err != nil {
		return err
	}
	o.failover.apply(&cfg)
	o.natQuota.apply(&cfg)
	lan := &lanMux{}
	bb, err := b4.New(cfg, lan, accessStats.NewLink(access, log))
	if err != nil {
		return err
	}
	closers = append(closers, bb.Close)
	if started != nil {
		started(bb)
	}

	if o.tun != "" {
		dev, err := openTUN(o)
		if err != nil {
			return err
		}
		closers = append(closers, func() { dev.Close() })
		lanStats = devlink.NewStats("lan")
		if o.tunSetup {
			if err := ifsetup.Up(ifsetup.Config{Name: dev.Name(), Addr: o.tunAddr, MTU: int(cfg.TunnelMTU), DefaultRoute: o.defaultRoute}); err != nil {
				return err
			}
		}
		lan.setTUN(lanStats.NewLink(dev, log))
		wg.Add(1)
		go func() { defer wg.Done(); lanStats.Run(ctx, fail, dev, bb.FromLAN, log) }()
		log.Info("LAN TUN ready", "dev", dev.Name(), "mtu", cfg.TunnelMTU)
	}
	if srv := bb.LANPCP(); srv != nil && !o.lan.off && len(o.lan.addrs) > 0 {
		stop, err := startLANPCP(o.lan.addrs, srv, log)
		if err != nil {
			return err
		}
		closers = append(closers, stop)
	}
	if o.socks5 != "" {
		stop, err := startSOCKS(o.socks5, bb, lan, cfg.TunnelMTU, log)
		if err != nil {
			return err
		}
		closers = append(closers, stop)
	}
	wg.Add(1)
	go func() { defer wg.Done(); accessStats.Run(ctx, fail, access, bb.FromAccess, log) }()
	wg.Add(1)
	go func() { defer wg.Done(); printStatus(ctx, bb, stdout) }()
	stopStatus := statusOnSignal(func() b4.Status {
		st := bb.Status()
		st.Counters = devlink.MergeCounters(st.Counters, accessStats, lanStats)
		return st
	}, stdout)
	defer stopStatus()
	log.Info("B4 starting", "ipv6", src, "aftr", aftrAddr, "underlay", o.underlay, "provisioning", pl.how)
	err = bb.Run(ctx)
	st := bb.Status()
	args := []any{}
	for k, v := range devlink.MergeCounters(st.Counters, accessStats, lanStats) {
		args = append(args, k, v)
	}
	log.Info("counters at exit", args...)
	log.Info("NAT at exit", "stats", fmt.Sprintf("%+v", st.NAT))
	// A device that failed is why serving ended, whatever Run says.
	if cause := context.Cause(ctx); errors.As(cause, new(*devlink.DeviceError)) {
		err = cause
	}
	return err
}

// lanMux sends LAN-bound packets to the SOCKS5 front end's stack when they
// are for its address, and to the TUN otherwise.
type lanMux struct {
	mu    sync.RWMutex
	tun   *devlink.Link
	socks *devlink.Async
}

func (m *lanMux) setTUN(l *devlink.Link) { m.mu.Lock(); m.tun = l; m.mu.Unlock() }

func (m *lanMux) setSOCKS(a *devlink.Async) { m.mu.Lock(); m.socks = a; m.mu.Unlock() }

// Send implements b4.Link.
func (m *lanMux) Send(pkt []byte) {
	m.mu.RLock()
	t, s := m.tun, m.socks
	m.mu.RUnlock()
	if s != nil && len(pkt) >= packet.IPv4HeaderLen && netip.AddrFrom4([4]byte(pkt[16:20])) == socksHost {
		s.Send(append([]byte(nil), pkt...))
		return
	}
	if t != nil {
		t.Send(pkt)
	}
}

// startSOCKS runs the SOCKS5 front end: its flows are dialled from a
// userspace LAN host whose packets enter the B4 like any LAN host's.
func startSOCKS(addr string, bb *b4.B4, lan *lanMux, mtu uint32, log *slog.Logger) (func(), error) {
	toB4 := devlink.NewAsync(4096, bb.FromLAN)
	host, err := netstack.New(netstack.Options{
		Name: "socks-lan", MTU: mtu,
		Addrs:  []netip.Prefix{netip.PrefixFrom(socksHost, 24)},
		Output: toB4.Send,
		// A SOCKS5 client may ask for 127.0.0.1: in the laptop lab that is
		// the host behind the AFTR's egress.
		AllowLoopback: true,
		Logger:        log,
	})
	if err != nil {
		toB4.Close()
		return nil, err
	}
	toHost := devlink.NewAsync(4096, host.Inject)
	lan.setSOCKS(toHost)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		toHost.Close()
		toB4.Close()
		host.Close()
		return nil, fmt.Errorf("--socks5 %s: %w", addr, err)
	}
	srv := &socks5.Server{Dialer: stackDialer{host}, Resolver: net.DefaultResolver, Logger: log, IdleTimeout: 5 * time.Minute}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	log.Info("SOCKS5 front end ready", "addr", ln.Addr())
	return func() {
		ln.Close()
		srv.Close()
		<-done
		toHost.Close()
		toB4.Close()
		host.Close()
	}, nil
}

// stackDialer dials from the SOCKS5 front end's userspace LAN host.
type stackDialer struct{ s *netstack.Stack }

func (d stackDialer) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	return d.s.DialTCP(ctx, dst)
}

func (d stackDialer) ListenUDP(ctx context.Context) (net.PacketConn, error) {
	return d.s.DialUDP(netip.AddrPortFrom(socksHost, 0), netip.AddrPort{})
}

// printStatus writes one line when the B4 is provisioned and on every
// change of address, port set or provisioning state.
func printStatus(ctx context.Context, bb *b4.B4, w io.Writer) {
	var last b4.Status
	for {
		ch := bb.Changed()
		st := bb.Status()
		if st.Provisioned != last.Provisioned || st.PublicIPv4 != last.PublicIPv4 || st.Ports != last.Ports || st.Provisionings != last.Provisionings {
			if st.Provisioned && st.Provisioning != "pcp" {
				fmt.Fprintf(w, "provisioned: public IPv4 %v ports %v from %s pool %v\n", st.PublicIPv4, st.Ports, st.Provisioning, st.Pool)
				printForwards(w, st)
			} else if st.Provisioned {
				fmt.Fprintf(w, "provisioned: public IPv4 %v ports %v lifetime %v pool %v\n", st.PublicIPv4, st.Ports, st.Lifetime, st.Pool)
				printForwards(w, st)
			} else if last.Provisioned {
				fmt.Fprintln(w, "deprovisioned: provisioning again")
			}
			last = st
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

var _ tun.Device
