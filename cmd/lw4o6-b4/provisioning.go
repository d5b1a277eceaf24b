package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/spf13/pflag"

	"github.com/lw4o6/lw4o6/b4"
	"github.com/lw4o6/lw4o6/b4/dhcp6"
)

// dhcpOptions are the provisioning flags.
type dhcpOptions struct {
	provision string
	accessIf  string
	server    string
	dnsPort   int
	pcpWait   time.Duration
}

func (d *dhcpOptions) register(fs *pflag.FlagSet) {
	fs.StringVar(&d.provision, "provision", "auto", "how the B4 gets its address and port set: pcp, dhcpv6 (the RFC 7598 S46 binding) or auto (PCP, then DHCPv6 S46 if the AFTR does not answer PCP)")
	fs.StringVar(&d.accessIf, "access-if", "", "the access interface `NAME` where DHCPv6 is asked (default: the interface holding --ipv6)")
	fs.DurationVar(&d.pcpWait, "pcp-wait", 30*time.Second, "with --provision auto: how long PCP may go unanswered before the DHCPv6 S46 binding is used")
	fs.StringVar(&d.server, "dhcpv6-server", "", "send DHCPv6 to `HOST:PORT` instead of [ff02::1:2%access-if]:547 (labs, tests)")
	fs.IntVar(&d.dnsPort, "dhcpv6-dns-port", 53, "port of the DNS servers DHCPv6 names (labs, tests)")
	fs.MarkHidden("dhcpv6-dns-port")
}

func (d *dhcpOptions) check(o *options) error {
	switch d.provision {
	case "pcp", "dhcpv6", "auto":
	default:
		return fmt.Errorf("--provision %q: want pcp, dhcpv6 or auto", d.provision)
	}
	if d.pcpWait < time.Second || d.pcpWait > time.Hour {
		return fmt.Errorf("--pcp-wait %v: want 1s to 1h", d.pcpWait)
	}
	if d.dnsPort < 1 || d.dnsPort > 65535 {
		return fmt.Errorf("--dhcpv6-dns-port %d: want 1 to 65535", d.dnsPort)
	}
	if d.server != "" {
		if _, err := net.ResolveUDPAddr("udp6", d.server); err != nil {
			return fmt.Errorf("--dhcpv6-server %q: %v", d.server, err)
		}
	}
	needDHCP := o.aftr == "" || d.provision == "dhcpv6"
	if needDHCP && d.accessIf == "" && d.server == "" && !o.ipv6.IsValid() {
		if o.aftr == "" {
			return errors.New("--aftr is required unless DHCPv6 can find the AFTR: give --access-if NAME (or --ipv6 ADDR on the access link)")
		}
		return errors.New("--provision dhcpv6 needs the access link: give --access-if NAME (or --ipv6 ADDR on it)")
	}
	return nil
}

// plan is how one B4 runs: its AFTR, its tunnel source (invalid: source
// address selection), and for "dhcpv6" its static binding.
type plan struct {
	aftr   netip.Addr
	src    netip.Addr
	static b4.Static
	how    string // "pcp" or "dhcpv6"
}

// errReplan ends a B4's run so that the next plan replaces it.
var errReplan = errors.New("provisioning changed")

// provisioner decides the plans and watches DHCPv6 for changes.
type provisioner struct {
	o   *options
	log *slog.Logger

	conn    net.PacketConn // the DHCPv6 socket, opened when first needed
	watcher *dhcp6.Watcher

	mu       sync.Mutex
	last     *dhcp6.Result // the latest DHCPv6 answer
	fellBack bool          // auto: PCP went unanswered, S46 is in use
}

// serve runs the B4, building it again whenever its provisioning changes:
// another AFTR from DHCPv6, another S46 binding, or (auto) the switch from
// PCP to the S46 binding.
func serve(ctx context.Context, o *options, stdout io.Writer, log *slog.Logger) error {
	p := &provisioner{o: o, log: log}
	defer p.close()
	for {
		pl, err := p.next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		runCtx, cancel := context.WithCancelCause(ctx)
		var wg sync.WaitGroup
		err = serveB4(runCtx, o, pl, stdout, log, func(bb *b4.B4) { p.watch(runCtx, cancel, pl, bb, &wg) })
		cause := context.Cause(runCtx)
		cancel(nil)
		wg.Wait()
		if ctx.Err() != nil || !errors.Is(cause, errReplan) {
			return err
		}
		log.Info("provisioning again", "why", cause)
	}
}

func (p *provisioner) close() {
	if p.conn != nil {
		p.conn.Close()
	}
}

// next makes the plan for the next B4.
func (p *provisioner) next(ctx context.Context) (plan, error) {
	d := p.o.dhcp
	p.mu.Lock()
	fellBack := p.fellBack
	p.mu.Unlock()
	if d.provision == "dhcpv6" || fellBack {
		for {
			r, err := p.ask(ctx, 0)
			if err != nil {
				return plan{}, err
			}
			if pl, err := p.s46Plan(r); err == nil {
				p.log.Info("provisioning by the DHCPv6 S46 binding (RFC 7598)", "aftr", pl.aftr, "ipv4", pl.static.StaticIPv4, "ports", pl.static.StaticPorts, "ipv6", pl.src)
				return pl, nil
			} else if d.provision == "auto" {
				p.log.Warn("DHCPv6 no longer gives a usable S46 binding: back to PCP", "err", err)
				p.mu.Lock()
				p.fellBack = false
				p.mu.Unlock()
				break
			} else {
				p.log.Warn("DHCPv6 gave no usable S46 binding", "err", err, "retry-in", retryDHCP)
			}
			if err := sleep(ctx, retryDHCP); err != nil {
				return plan{}, err
			}
		}
	}
	pl := plan{src: p.o.ipv6, how: "pcp"}
	if p.o.aftr != "" {
		a, err := resolveAFTR(ctx, p.o.aftr)
		if err != nil {
			return plan{}, err
		}
		pl.aftr = a
	} else {
		for {
			r, err := p.ask(ctx, 0)
			if err != nil {
				return plan{}, err
			}
			if pl.aftr = aftrOf(r); pl.aftr.IsValid() {
				break
			}
			p.log.Warn("DHCPv6 gave no usable AFTR (no AFTR-Name that resolves, no S46_BR)", "retry-in", retryDHCP)
			if err := sleep(ctx, retryDHCP); err != nil {
				return plan{}, err
			}
		}
	}
	p.log.Info("provisioning by PCP", "aftr", pl.aftr, "mode", d.provision)
	return pl, nil
}

// retryDHCP is the wait before asking DHCPv6 again after an unusable answer.
var retryDHCP = time.Minute

// aftrOf is the AFTR a DHCPv6 answer names for PCP: the resolved
// AFTR-Name (RFC 6334), else the S46 BR (RFC 7598 §4.2).
func aftrOf(r dhcp6.Result) netip.Addr {
	if r.AFTR.IsValid() {
		return r.AFTR
	}
	if r.Info.LW != nil {
		return r.Info.LW.BR
	}
	return netip.Addr{}
}

// s46Plan turns an S46 binding into a static plan.
func (p *provisioner) s46Plan(r dhcp6.Result) (plan, error) {
	lw := r.Info.LW
	if lw == nil || !lw.HasBinding() {
		return plan{}, errors.New("no OPTION_S46_CONT_LW with an S46_V4V6BIND")
	}
	ports, err := lw.Ports()
	if err != nil {
		return plan{}, err
	}
	src := lw.TunnelSource()
	if p.o.ipv6.IsValid() && p.o.ipv6 != src {
		p.log.Warn("--ipv6 differs from the S46 binding's tunnel source; using the binding's (RFC 7596 §5.1)", "ipv6", p.o.ipv6, "binding", src)
	}
	return plan{
		aftr:   lw.BR,
		src:    src,
		static: b4.Static{StaticIPv4: lw.IPv4, StaticPorts: ports, StaticSource: "dhcpv6"},
		how:    "dhcpv6",
	}, nil
}

// ask gets a fresh DHCPv6 answer; bound > 0 limits the wait, otherwise
// it retransmits until ctx ends (RFC 8415 §18.2.6 sets no limit).
func (p *provisioner) ask(ctx context.Context, bound time.Duration) (dhcp6.Result, error) {
	if err := p.open(); err != nil {
		return dhcp6.Result{}, err
	}
	if bound > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, bound)
		defer cancel()
	}
	r, err := p.watcher.Get(ctx)
	if err != nil {
		return r, err
	}
	p.mu.Lock()
	p.last = &r
	p.mu.Unlock()
	return r, nil
}

// open opens the DHCPv6 client socket on the access link.
func (p *provisioner) open() error {
	if p.watcher != nil {
		return nil
	}
	d := p.o.dhcp
	ifName := d.accessIf
	if ifName == "" && p.o.ipv6.IsValid() {
		if ifi := interfaceOf(p.o.ipv6); ifi != nil {
			ifName = ifi.Name
		}
	}
	var server *net.UDPAddr
	if d.server != "" {
		a, err := net.ResolveUDPAddr("udp6", d.server)
		if err != nil {
			return fmt.Errorf("--dhcpv6-server %q: %v", d.server, err)
		}
		server = a
	} else {
		if ifName == "" {
			return fmt.Errorf("DHCPv6: no interface holds %v: give --access-if NAME", p.o.ipv6)
		}
		server = &net.UDPAddr{IP: net.ParseIP(dhcp6.AllServers), Port: 547, Zone: ifName}
	}
	// RFC 8415 §7.2: clients listen on port 546. Without the privilege
	// for it, any port: servers that answer the source port still reach us.
	conn, err := net.ListenUDP("udp6", &net.UDPAddr{Port: 546})
	if err != nil {
		if conn, err = net.ListenUDP("udp6", &net.UDPAddr{}); err != nil {
			return fmt.Errorf("DHCPv6 socket: %w", err)
		}
		p.log.Warn("DHCPv6 client port 546 unavailable; servers that answer only port 546 will not be heard", "port", conn.LocalAddr().(*net.UDPAddr).Port)
	}
	p.conn = conn
	p.watcher = &dhcp6.Watcher{
		Client:  &dhcp6.Client{Conn: conn, Server: server, ClientID: clientID(ifName), Logger: p.log},
		DNSPort: uint16(d.dnsPort),
		Logger:  p.log,
	}
	p.log.Info("asking DHCPv6", "server", server, "interface", ifName)
	return nil
}

// clientID is DUID-LL from the interface's hardware address (RFC 8415
// §11.4), else a DUID-UUID made up for this run (§11.5).
func clientID(ifName string) dhcpv6.DUID {
	if ifi, err := net.InterfaceByName(ifName); err == nil && len(ifi.HardwareAddr) == 6 {
		return &dhcpv6.DUIDLL{HWType: 1, LinkLayerAddr: ifi.HardwareAddr}
	}
	var u dhcpv6.DUIDUUID
	rand.Read(u.UUID[:])
	return &u
}

// watch runs beside one B4: DHCPv6 changes that concern its plan end it
// (errReplan), and under auto a PCP that goes unanswered for --pcp-wait
// hands over to the S46 binding.
func (p *provisioner) watch(ctx context.Context, cancel context.CancelCauseFunc, pl plan, bb *b4.B4, wg *sync.WaitGroup) {
	p.mu.Lock()
	last := p.last
	p.mu.Unlock()
	if last != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.watcher.Watch(ctx, *last, func(r dhcp6.Result) {
				p.mu.Lock()
				p.last = &r
				p.mu.Unlock()
				if why := p.affects(pl, r); why != "" {
					cancel(fmt.Errorf("%w: %s", errReplan, why))
				}
			})
		}()
	}
	if p.o.dhcp.provision == "auto" && pl.how == "pcp" {
		wg.Add(1)
		go func() { defer wg.Done(); p.fallback(ctx, cancel, bb) }()
	}
}

// affects says why a new DHCPv6 answer changes the running plan, or "".
func (p *provisioner) affects(pl plan, r dhcp6.Result) string {
	if pl.how == "dhcpv6" {
		n, err := p.s46Plan(r)
		if err != nil {
			if p.o.dhcp.provision == "dhcpv6" {
				p.log.Warn("DHCPv6 S46 binding no longer usable; keeping the current one", "err", err)
				return ""
			}
			return "S46 binding withdrawn"
		}
		if n.aftr != pl.aftr || n.src != pl.src || n.static != pl.static {
			return "S46 binding changed"
		}
		return ""
	}
	if p.o.aftr == "" {
		if a := aftrOf(r); a.IsValid() && a != pl.aftr {
			return fmt.Sprintf("AFTR changed from %v to %v", pl.aftr, a)
		}
	}
	return ""
}

// fallback waits --pcp-wait for PCP; unanswered, it switches to the S46
// binding when DHCPv6 has one.
func (p *provisioner) fallback(ctx context.Context, cancel context.CancelCauseFunc, bb *b4.B4) {
	wait := p.o.dhcp.pcpWait
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		ch := bb.Changed()
		if bb.Status().Provisioned {
			p.log.Info("provisioning: PCP won (--provision auto)")
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
			continue
		case <-deadline.C:
		}
		break
	}
	p.log.Warn("the AFTR did not answer PCP: trying the DHCPv6 S46 binding (RFC 7598)", "waited", wait)
	p.mu.Lock()
	last := p.last
	p.mu.Unlock()
	var r dhcp6.Result
	if last != nil {
		r = *last
	} else {
		var err error
		if r, err = p.ask(ctx, 10*time.Second); err != nil {
			p.log.Warn("no DHCPv6 answer: still asking by PCP", "err", err)
			return
		}
	}
	if _, err := p.s46Plan(r); err != nil {
		p.log.Warn("no DHCPv6 S46 binding to fall back to: still asking by PCP", "err", err)
		return
	}
	p.mu.Lock()
	p.fellBack = true
	p.mu.Unlock()
	cancel(fmt.Errorf("%w: PCP unanswered for %v, DHCPv6 S46 binding available", errReplan, wait))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
