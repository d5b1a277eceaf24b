// Package localaftr runs an AFTR inside the process for the embedding API's
// tests, its example and examples/embed: the AFTR's access side is one end
// of an in-memory pipe (tun/memtun), whose other end a B4 uses as its
// access device; its IPv4 side is the host's own sockets (stack/egress,
// loopback allowed) plus one in-memory "Internet host" at InternetHostAddr
// from which inbound connections to a B4's mapped ports can be made.
package localaftr

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/lw4o6/lw4o6/aftr"
	"github.com/lw4o6/lw4o6/internal/devlink"
	"github.com/lw4o6/lw4o6/stack/egress"
	"github.com/lw4o6/lw4o6/stack/netstack"
	"github.com/lw4o6/lw4o6/tun"
	"github.com/lw4o6/lw4o6/tun/memtun"
)

// Addresses (documentation ranges only).
var (
	Addr             = netip.MustParseAddr("2001:db8::1")
	IPv4Addr         = netip.MustParseAddr("203.0.113.1")
	Pool             = netip.MustParsePrefix("192.0.2.0/28")
	InternetHostAddr = netip.MustParseAddr("198.51.100.10")
)

// AccessMTU is the pipe's MTU; the softwire's IPv4 MTU is 40 less.
const AccessMTU = 1500

// AFTR is a running in-process AFTR.
type AFTR struct {
	// Access is the B4's end of the access pipe: give it to the B4.
	Access tun.Device
	// InternetHost is a gVisor host at InternetHostAddr on the AFTR's
	// IPv4 side: dial a B4's public address from it.
	InternetHost *netstack.Stack
	AFTR         *aftr.AFTR

	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closers []func()
	once    sync.Once
}

// Start builds and runs the AFTR; Close stops it.
func Start(log *slog.Logger) (l *AFTR, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l = &AFTR{}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	mine, theirs := memtun.NewPipe(AccessMTU)
	l.Access = theirs
	l.closers = append(l.closers, func() { mine.Close(); theirs.Close() })

	var a *aftr.AFTR
	ready := make(chan struct{})
	fromInternet := func(pkt []byte) {
		<-ready
		if a != nil {
			a.FromInternet(pkt)
		}
	}
	// Both the egress stack and the Internet host call back from their
	// output paths with locks held: their packets reach the AFTR on a
	// goroutine of their own.
	toAFTR := devlink.NewAsync(4096, fromInternet)
	l.closers = append(l.closers, toAFTR.Close)
	mtu := uint32(AccessMTU - 40)
	eg, err := egress.New(egress.Config{MTU: mtu, Output: toAFTR.Send, Logger: log, AllowLoopback: true})
	if err != nil {
		close(ready)
		return nil, err
	}
	l.closers = append(l.closers, eg.Close)
	host, err := netstack.New(netstack.Options{Name: "internet-host", MTU: mtu, Addrs: []netip.Prefix{netip.PrefixFrom(InternetHostAddr, 24)}, Output: toAFTR.Send, Logger: log})
	if err != nil {
		close(ready)
		return nil, err
	}
	l.InternetHost = host
	l.closers = append(l.closers, host.Close)
	toHost := devlink.NewAsync(4096, host.Inject)
	l.closers = append(l.closers, toHost.Close)

	cfg := aftr.DefaultConfig()
	cfg.Addr, cfg.IPv4Addr, cfg.Pools = Addr, IPv4Addr, []netip.Prefix{Pool}
	cfg.ForwardToLoopback = true
	cfg.AccessMTU = AccessMTU
	cfg.Logger = log.With("node", "aftr")
	a, err = aftr.New(cfg, devlink.NewLink(mine, log), internetLink{eg: eg, host: toHost})
	close(ready)
	if err != nil {
		return nil, err
	}
	l.AFTR = a
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.wg.Add(2)
	go func() { defer l.wg.Done(); a.Run(ctx) }()
	go func() {
		defer l.wg.Done()
		if err := devlink.Pump(mine, a.FromAccess, log); err != nil && !errors.Is(err, tun.ErrClosed) {
			log.Warn("access pump", "err", err)
		}
	}()
	return l, nil
}

// Close stops the AFTR and releases everything it holds.
func (l *AFTR) Close() {
	l.once.Do(func() {
		if l.cancel != nil {
			l.cancel()
		}
		for i := len(l.closers) - 1; i >= 0; i-- {
			l.closers[i]()
		}
		l.wg.Wait()
		if l.AFTR != nil {
			l.AFTR.Close()
		}
	})
}

// internetLink sends the AFTR's IPv4 packets to the Internet host when
// addressed to it and to the host's sockets otherwise.
type internetLink struct {
	eg   *egress.Egress
	host *devlink.Async
}

func (l internetLink) Send(pkt []byte) {
	if len(pkt) >= 20 && netip.AddrFrom4([4]byte(pkt[16:20])) == InternetHostAddr {
		l.host.Send(append([]byte(nil), pkt...))
		return
	}
	l.eg.Inject(pkt)
}
