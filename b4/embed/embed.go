// Package embed runs a B4 inside a Go program, in the manner of tailscale's
// tsnet: no TUN and no SOCKS5 front end. The B4 (package b4) gets a
// userspace LAN host of its own — a gVisor stack at Config.HostAddr on the
// B4's LAN — and the program uses that host's sockets: DialContext reaches
// IPv4 destinations through the softwire, Listen and ListenPacket open a
// port on the host and map it in the B4's port set (an explicit mapping, as
// a LAN PCP MAP makes), so that it is reachable from the Internet at the
// public address the listener's PublicAddr reports.
//
// The access side is any tun.Device carrying IPv4-in-IPv6 to and from the
// AFTR: the UDP underlay client (tun/udpunder.NewClient), the raw IPv6
// socket (tun/rawip6.Open, needs CAP_NET_RAW), or an in-memory pipe.
//
//	n, err := embed.New(embed.Config{B4: cfg, Access: dev})
//	if err := n.Start(ctx); err != nil { ... } // provisions (PCP), bounded wait
//	defer n.Close()                            // releases the binding
//	c, err := n.DialContext(ctx, "tcp", "198.51.100.10:80")
//	ln, err := n.Listen("tcp", ":8080")       // a LAN port, mapped in the set
//	fmt.Println(ln.PublicAddr())               // e.g. 192.0.2.0:2634
//
// DialContext takes IPv4 addresses only (there is no resolver on the LAN
// host). A listener's mapping is renewed while it is open and made again
// when the B4 provisions again; its public port is the LAN port when the
// set holds that port, another port of the set otherwise.
//
// The Example runs against an AFTR in the process; examples/embed is a
// runnable program.
package embed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/lw4o6/lw4o6/b4"
	"github.com/lw4o6/lw4o6/internal/devlink"
	"github.com/lw4o6/lw4o6/stack/netstack"
	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/tun"
)

// Default LAN addresses (the benchmark range 198.18.0.0/15).
var (
	DefaultHostAddr = netip.MustParsePrefix("198.18.0.2/24")
	DefaultGateway  = netip.MustParseAddr("198.18.0.1")
)

// Config configures an embedded B4.
type Config struct {
	// B4 is the B4's configuration (start from b4.DefaultConfig; Addr and
	// AFTR must be set). A zero Gateway becomes DefaultGateway.
	B4 b4.Config
	// Access carries the softwire; Node.Close closes it (New leaves it
	// open when it fails).
	Access tun.Device
	// HostAddr is the LAN host's address and LAN prefix; zero means
	// DefaultHostAddr. It must be on the same prefix as B4.Gateway.
	HostAddr netip.Prefix
	// ProvisionTimeout bounds Start's wait for the port set; zero means
	// 30 s.
	ProvisionTimeout time.Duration
	// MappingLifetime is the lifetime of the mappings Listen makes, renewed
	// at half of it while the listener is open; zero means 1 hour.
	MappingLifetime time.Duration
	// Logger receives the node's log, and the B4's when B4.Logger is nil;
	// nil means B4.Logger, and nil there too discards it.
	Logger *slog.Logger
}

// Node is an embedded B4 with its LAN host.
type Node struct {
	cfg  Config
	log  *slog.Logger
	b    *b4.B4
	host *netstack.Stack

	toB4, toHost *devlink.Async

	mu      sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	runErr  chan error
	done    chan struct{} // closed by Close
	lns     map[*mapping]struct{}
}

type closer interface{ Close() error }

// Errors.
var (
	ErrClosed         = errors.New("embed: node closed")
	ErrNotStarted     = errors.New("embed: node not started")
	ErrNotProvisioned = errors.New("embed: not provisioned in time")
)

// New builds the B4 and its LAN host; Start provisions it.
func New(cfg Config) (*Node, error) {
	if cfg.Access == nil {
		return nil, errors.New("embed: Config.Access is nil")
	}
	if !cfg.HostAddr.IsValid() {
		cfg.HostAddr = DefaultHostAddr
	}
	if !cfg.B4.Gateway.IsValid() {
		cfg.B4.Gateway = DefaultGateway
	}
	if !cfg.HostAddr.Addr().Is4() || !cfg.HostAddr.Contains(cfg.B4.Gateway) || cfg.HostAddr.Addr() == cfg.B4.Gateway {
		return nil, fmt.Errorf("embed: HostAddr %v and gateway %v are not two addresses of one IPv4 prefix", cfg.HostAddr, cfg.B4.Gateway)
	}
	if cfg.ProvisionTimeout <= 0 {
		cfg.ProvisionTimeout = 30 * time.Second
	}
	if cfg.MappingLifetime <= 0 {
		cfg.MappingLifetime = time.Hour
	}
	n := &Node{cfg: cfg, log: cfg.Logger, lns: map[*mapping]struct{}{}, done: make(chan struct{})}
	if n.log == nil {
		n.log = cfg.B4.Logger
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if cfg.B4.Logger == nil {
		cfg.B4.Logger = n.log
	}
	// Packets between the host and the B4 cross on goroutines of their
	// own: the host's output path holds its stack's locks, and the B4 may
	// answer on the LAN (ICMP, LAN PCP) from within FromLAN.
	n.toB4 = devlink.NewAsync(4096, func(p []byte) { n.b.FromLAN(p) })
	access := devlink.NewLink(cfg.Access, n.log)
	b, err := b4.New(cfg.B4, lanLink{n}, access)
	if err != nil {
		n.toB4.Close()
		return nil, err
	}
	n.b = b
	mtu := cfg.B4.TunnelMTU
	if mtu == 0 || int(mtu) > cfg.Access.MTU()-packet.IPv6HeaderLen {
		mtu = uint32(cfg.Access.MTU() - packet.IPv6HeaderLen)
	}
	host, err := netstack.New(netstack.Options{
		Name: "embed-host", MTU: mtu, Addrs: []netip.Prefix{cfg.HostAddr},
		Output: n.toB4.Send, Logger: n.log, AllowLoopback: cfg.B4.AllowLoopback,
	})
	if err != nil {
		n.toB4.Close()
		b.Close()
		return nil, err
	}
	n.host = host
	n.toHost = devlink.NewAsync(4096, host.Inject)
	return n, nil
}

// lanLink is the B4's LAN: a copy of each packet goes to the host.
type lanLink struct{ n *Node }

func (l lanLink) Send(pkt []byte) { l.n.toHost.Send(append([]byte(nil), pkt...)) }

// Start runs the B4 and waits, at most Config.ProvisionTimeout or until
// ctx ends, for it to be provisioned. The B4 keeps running (renewing,
// provisioning again) until Close; ctx only bounds the wait.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return ErrClosed
	}
	if !n.started {
		n.started = true
		rctx, cancel := context.WithCancel(context.Background())
		n.cancel = cancel
		n.runErr = make(chan error, 1)
		n.wg.Add(2)
		go func() { defer n.wg.Done(); n.runErr <- n.b.Run(rctx) }()
		go func() {
			defer n.wg.Done()
			err := devlink.Pump(n.cfg.Access, n.b.FromAccess, n.log)
			if err != nil && rctx.Err() == nil && !errors.Is(err, tun.ErrClosed) {
				n.log.Error("access device stopped", "err", err)
			}
		}()
	}
	n.mu.Unlock()
	t := time.NewTimer(n.cfg.ProvisionTimeout)
	defer t.Stop()
	for {
		ch := n.b.Changed()
		if n.b.Status().Provisioned {
			return nil
		}
		select {
		case <-ch:
		case err := <-n.runErr:
			n.runErr <- err
			return fmt.Errorf("embed: B4 stopped: %v", err)
		case <-t.C:
			return fmt.Errorf("%w (%v): is the AFTR at %v reachable?", ErrNotProvisioned, n.cfg.ProvisionTimeout, n.cfg.B4.AFTR)
		case <-ctx.Done():
			return ctx.Err()
		case <-n.done:
			return ErrClosed
		}
	}
}

// Run is Start, then waits for ctx to end and closes the node.
func (n *Node) Run(ctx context.Context) error {
	defer n.Close()
	if err := n.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// Status is the B4's status.
func (n *Node) Status() b4.Status { return n.b.Status() }

// HostAddr is the LAN host's address: the source of what DialContext
// sends, before the B4's NAT.
func (n *Node) HostAddr() netip.Addr { return n.cfg.HostAddr.Addr() }

func (n *Node) ready() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.closed:
		return ErrClosed
	case !n.started:
		return ErrNotStarted
	}
	return nil
}

// DialContext connects to an IPv4 address ("tcp", "tcp4", "udp", "udp4";
// addr is IP:port, no names) through the B4.
func (n *Node) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := n.ready(); err != nil {
		return nil, err
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("embed: %q is not an IPv4 address and port", addr)}
	}
	switch network {
	case "tcp", "tcp4":
		c, err := n.host.DialTCP(ctx, ap)
		if err != nil {
			return nil, err
		}
		return c, nil
	case "udp", "udp4":
		c, err := n.host.DialUDP(netip.AddrPortFrom(n.HostAddr(), 0), ap)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError(network)}
}

// Listener is a TCP listener on the LAN host whose port the B4 maps.
type Listener struct {
	net.Listener
	m *mapping
}

// PublicAddr is where the Internet reaches the listener.
func (l *Listener) PublicAddr() netip.AddrPort { return l.m.public() }

// Close closes the listener and deletes its mapping.
func (l *Listener) Close() error {
	err := l.Listener.Close()
	l.m.close()
	return err
}

// PacketConn is a UDP socket on the LAN host whose port the B4 maps.
type PacketConn struct {
	net.PacketConn
	m *mapping
}

// PublicAddr is where the Internet reaches the socket.
func (c *PacketConn) PublicAddr() netip.AddrPort { return c.m.public() }

// Close closes the socket and deletes its mapping.
func (c *PacketConn) Close() error {
	err := c.PacketConn.Close()
	c.m.close()
	return err
}

// Listen listens for TCP on the LAN host at addr (":PORT"; port 0 picks
// one) and maps that port in the B4's port set. The external port is the
// same as the internal one when the set holds it and it is free, another
// port of the set otherwise: see PublicAddr.
func (n *Node) Listen(network, addr string) (*Listener, error) {
	if network != "tcp" && network != "tcp4" {
		return nil, &net.OpError{Op: "listen", Net: network, Err: net.UnknownNetworkError(network)}
	}
	port, err := n.listenPort(addr)
	if err != nil {
		return nil, err
	}
	ln, err := n.host.ListenTCP(netip.AddrPortFrom(n.HostAddr(), port))
	if err != nil {
		return nil, err
	}
	local := netip.MustParseAddrPort(ln.Addr().String())
	m, err := n.mapPort(packet.ProtoTCP, local)
	if err != nil {
		ln.Close()
		return nil, err
	}
	l := &Listener{Listener: ln, m: m}
	m.owner = l
	return l, nil
}

// ListenPacket opens a UDP socket on the LAN host at addr (":PORT") and
// maps its port as Listen does.
func (n *Node) ListenPacket(network, addr string) (*PacketConn, error) {
	if network != "udp" && network != "udp4" {
		return nil, &net.OpError{Op: "listen", Net: network, Err: net.UnknownNetworkError(network)}
	}
	port, err := n.listenPort(addr)
	if err != nil {
		return nil, err
	}
	pc, err := n.host.DialUDP(netip.AddrPortFrom(n.HostAddr(), port), netip.AddrPort{})
	if err != nil {
		return nil, err
	}
	local := netip.MustParseAddrPort(pc.LocalAddr().String())
	m, err := n.mapPort(packet.ProtoUDP, local)
	if err != nil {
		pc.Close()
		return nil, err
	}
	c := &PacketConn{PacketConn: pc, m: m}
	m.owner = c
	return c, nil
}

func (n *Node) listenPort(addr string) (uint16, error) {
	if err := n.ready(); err != nil {
		return 0, err
	}
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	if host != "" && host != n.HostAddr().String() && host != "0.0.0.0" {
		return 0, fmt.Errorf("embed: listen on %q: the LAN host has only %v", addr, n.HostAddr())
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("embed: listen on %q: bad port", addr)
	}
	return uint16(port), nil
}

// mapping is one explicit mapping in the B4's set, renewed while its
// socket is open.
type mapping struct {
	n        *Node
	proto    uint8
	internal netip.AddrPort
	owner    closer
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once

	mu  sync.Mutex
	ext uint16
}

func (n *Node) mapPort(proto uint8, internal netip.AddrPort) (*mapping, error) {
	ext, err := n.b.AddPortForward(proto, internal, internal.Port(), n.cfg.MappingLifetime)
	if err != nil {
		return nil, fmt.Errorf("embed: mapping %v: %w", internal, err)
	}
	m := &mapping{n: n, proto: proto, internal: internal, ext: ext, stop: make(chan struct{}), done: make(chan struct{})}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		n.b.RemovePortForward(proto, internal)
		return nil, ErrClosed
	}
	n.lns[m] = struct{}{}
	n.mu.Unlock()
	go m.renew()
	return m, nil
}

// renew refreshes the mapping at half its lifetime and after every change
// of the B4's status: once the B4 provisions again (perhaps a new set), the
// refresh makes the mapping anew in the set it holds.
func (m *mapping) renew() {
	defer close(m.done)
	t := time.NewTicker(m.n.cfg.MappingLifetime / 2)
	defer t.Stop()
	for {
		changed := m.n.b.Changed()
		select {
		case <-m.stop:
			return
		case <-t.C:
		case <-changed:
			if !m.n.b.Status().Provisioned {
				continue
			}
		}
		m.mu.Lock()
		ext, err := m.n.b.AddPortForward(m.proto, m.internal, m.ext, m.n.cfg.MappingLifetime)
		if err == nil {
			m.ext = ext
		}
		m.mu.Unlock()
		if err != nil {
			m.n.log.Warn("renewing a listener's mapping", "internal", m.internal, "err", err)
		}
	}
}

func (m *mapping) public() netip.AddrPort {
	m.mu.Lock()
	defer m.mu.Unlock()
	return netip.AddrPortFrom(m.n.b.Status().PublicIPv4, m.ext)
}

// close stops the renewal and deletes the mapping.
func (m *mapping) close() error {
	m.once.Do(func() {
		close(m.stop)
		<-m.done
		m.n.b.RemovePortForward(m.proto, m.internal)
		m.n.mu.Lock()
		delete(m.n.lns, m)
		m.n.mu.Unlock()
	})
	return nil
}

// Close closes every listener, stops the B4 (which deletes its binding at
// the AFTR: MAP lifetime 0, unless B4.KeepBinding), closes the access
// device and the LAN host, and waits for every goroutine it started.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	close(n.done)
	var owners []closer
	for m := range n.lns {
		owners = append(owners, m.owner)
	}
	n.mu.Unlock()
	for _, o := range owners {
		o.Close()
	}
	if n.cancel != nil {
		// Run sends its delete through the softwire before returning: the
		// access device closes after.
		n.cancel()
		<-n.runErr
	}
	err := n.cfg.Access.Close()
	n.wg.Wait()
	n.toB4.Close()
	n.toHost.Close()
	n.host.Close()
	n.b.Close()
	return err
}
