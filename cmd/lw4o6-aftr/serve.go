package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/lw4o6/lw4o6/aftr"
	"github.com/lw4o6/lw4o6/internal/devlink"
	"github.com/lw4o6/lw4o6/internal/ifsetup"
	"github.com/lw4o6/lw4o6/stack/egress"
	"github.com/lw4o6/lw4o6/stack/packet"
)

func serve(ctx context.Context, o *options, stdout io.Writer, log *slog.Logger) error {
	access, err := openAccess(o, log)
	if err != nil {
		return err
	}
	// A device pump that fails stops the daemon (fail's cause is the
	// error serve returns), rather than leaving it up with no data path.
	// ctx ends before the devices close, so that their pumps know the
	// close for a shutdown.
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
	devs := &deviceStats{access: devlink.NewStats("access")}

	cfg, err := buildConfig(o)
	if err != nil {
		return err
	}
	cfg.Logger = log
	cfg.ForwardToLoopback = o.loopback
	cfg.StateDir = o.stateDir
	if o.stateDir == "" {
		log.Warn("no binding journal (--state-dir \"\" or no state directory found): a restart loses every PCP binding")
	} else {
		log.Info("binding journal", "state-dir", o.stateDir)
	}

	// The Internet side is chosen before the AFTR exists; its packets reach
	// the AFTR through this indirection once it does.
	var a *aftr.AFTR
	ready := make(chan struct{})
	fromInternet := func(pkt []byte) {
		<-ready
		if a != nil { // nil when aftr.New failed: serve is returning
			a.FromInternet(pkt)
		}
	}
	var internet aftr.Link
	switch o.ipv4Side {
	case "host":
		// Replies from the egress stack go to the AFTR on their own
		// goroutine: the stack's output path holds its locks.
		toAFTR := devlink.NewAsync(4096, fromInternet)
		closers = append(closers, toAFTR.Close)
		eg, err := egress.New(egress.Config{MTU: uint32(o.mtu - packet.IPv6HeaderLen), Output: toAFTR.Send, Logger: log, Ping: true, AllowLoopback: o.loopback})
		if err != nil {
			return err
		}
		closers = append(closers, eg.Close)
		internet = egressLink{eg}
	case "tun":
		dev, err := openTUN(o.tunName, o.mtu-packet.IPv6HeaderLen)
		if err != nil {
			return err
		}
		closers = append(closers, func() { dev.Close() })
		if o.tunAddr.IsValid() {
			if err := ifsetup.Up(ifsetup.Config{Name: dev.Name(), Addr: o.tunAddr, MTU: o.mtu - packet.IPv6HeaderLen, Routes: o.pools}); err != nil {
				return err
			}
		}
		devs.internet = devlink.NewStats("internet")
		internet = devs.internet.NewLink(dev, log)
		wg.Add(1)
		go func() { defer wg.Done(); devs.internet.Run(ctx, fail, dev, fromInternet, log) }()
	}
	a, err = aftr.New(cfg, devs.access.NewLink(access, log), internet)
	close(ready)
	if err != nil {
		return err
	}
	wg.Add(1)
	go func() { defer wg.Done(); devs.access.Run(ctx, fail, access, a.FromAccess, log) }()
	if o.provisionListen != "" {
		pc, err := net.ListenPacket("udp", o.provisionListen)
		if err != nil {
			return fmt.Errorf("--provision-listen: %w", err)
		}
		closers = append(closers, func() { pc.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.ServeProvisioning(ctx, pc); err != nil {
				log.Error("provisioning socket failed", "err", err)
			}
		}()
		log.Info("answering provisioning systems", "listen", pc.LocalAddr(), "provisioners", o.provisioners)
	}
	stopDump := dumpCountersOnSignal(counterSource{a, devs}, stdout)
	defer stopDump()
	stopReload := reloadOnSignal(func() { reloadBindings(a, o.bindings, log) })
	defer stopReload()
	fmt.Fprintf(stdout, "AFTR %v serving PCP at 192.0.0.1:5351 through the softwires; pools %v, %d ports per B4\n", cfg.Addr, cfg.Pools, cfg.PortsPerB4)
	log.Info("AFTR starting", "ipv6", cfg.Addr, "underlay", o.underlay, "ipv4-side", o.ipv4Side)
	err = a.Run(ctx)
	if cerr := a.Close(); cerr != nil {
		log.Error("closing the binding journal", "err", cerr)
	}
	logCounters(counterSource{a, devs}, log)
	// A device that failed is why serving ended, whatever Run says.
	if cause := context.Cause(ctx); errors.As(cause, new(*devlink.DeviceError)) {
		err = cause
	}
	return err
}

// deviceStats are the daemon's devices' error counters; internet is nil
// with --ipv4-side host.
type deviceStats struct{ access, internet *devlink.Stats }

// counterSource is what the counters output shows: the AFTR's counters
// and its devices' error counters.
type counterSource struct {
	a    *aftr.AFTR
	devs *deviceStats
}

func (c counterSource) Counters() map[string]uint64 {
	return devlink.MergeCounters(c.a.Counters(), c.devs.access, c.devs.internet)
}

// writeCounters prints m, one "name value" line each, sorted by name, as
// aftr.WriteCounters does.
func writeCounters(w io.Writer, m map[string]uint64) error {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if _, err := fmt.Fprintf(w, "%s %d\n", k, m[k]); err != nil {
			return err
		}
	}
	return nil
}

// egressLink hands the AFTR's Internet-bound packets to the host egress.
type egressLink struct{ e *egress.Egress }

func (l egressLink) Send(pkt []byte) { l.e.Inject(pkt) }

// buildConfig turns the flags (and a --bindings file) into an aftr.Config:
// the file first, then the flags given explicitly, then the profile.
func buildConfig(o *options) (aftr.Config, error) {
	cfg := aftr.DefaultConfig()
	cfg.Addr = o.ipv6[0]
	cfg.Addrs = o.ipv6[1:]
	if o.bindings != "" {
		if err := aftr.LoadSnabb(o.bindings, &cfg); err != nil {
			return cfg, fmt.Errorf("--bindings: %w", err)
		}
	}
	if o.ipv4.IsValid() {
		cfg.IPv4Addr = o.ipv4
	}
	cfg.Pools = o.pools
	cfg.PortsPerB4 = o.portsPerB4
	cfg.LifetimeMin, cfg.LifetimeMax = o.lifetimeMin, o.lifetimeMax
	cfg.QuotaPerPrefix, cfg.QuotaPrefixLen = o.quota, o.quotaLen
	cfg.Provisioners = o.provisioners
	cfg.Announce, cfg.AnnounceGroup = o.announce, o.announceGroup
	cfg.MaxSetsPerB4 = o.maxSets
	cfg.PCPRate, cfg.PCPRatePerB4, cfg.PCPBurstPerB4 = o.pcpRate, o.pcpRatePerB4, o.pcpBurstPerB4
	if o.bindings == "" || o.changed["icmp-on-fail"] {
		cfg.ICMPv6OnBindingFailure = o.icmpOnFail
	}
	if o.bindings == "" || o.changed["hairpinning"] {
		cfg.Hairpinning = o.hairpin
	}
	if o.bindings == "" || o.changed["mtu"] {
		cfg.AccessMTU = o.mtu
	}
	if err := aftr.ApplyProfile(&cfg, o.profile); err != nil {
		return cfg, fmt.Errorf("--profile: %w", err)
	}
	return cfg, nil
}

func logCounters(a counterSource, log *slog.Logger) {
	args := []any{}
	for k, v := range a.Counters() {
		args = append(args, k, v)
	}
	log.Info("counters at exit", args...)
}

var _ = time.Second
