// Package egress is the lwAFTR's unprivileged exit to the Internet ("host
// egress"): a gVisor netstack in promiscuous and spoofing mode terminates the
// TCP, UDP and ICMP echo flows of decapsulated B4 traffic and re-originates
// them with ordinary host sockets, the way slirp, gvisor-tap-vsock and
// tun2socks do. Answers go back toward the B4s as IPv4 packets whose source is
// the original destination, so the AFTR finds the B4 by (IPv4 destination,
// port) as RFC 7596 §5.2 requires of any packet it encapsulates.
//
// The host sees ordinary connections from this process: the B4's address and
// port are not preserved on the Internet side (that is the price of needing
// no privileges; a TUN-based exit would keep them).
package egress

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/lw4o6/lw4o6/stack/netstack"
)

// Defaults for zero Config fields.
const (
	// DefaultMTU is a 1500-byte IPv6 path minus the 40-byte softwire header.
	DefaultMTU = 1460
	// DefaultUDPIdle is gvisor-tap-vsock's UDP proxy timeout.
	DefaultUDPIdle = 90 * time.Second
	// DefaultTCPMaxInFlight bounds the SYNs whose host dial is pending;
	// more are dropped silently (the B4 retransmits).
	DefaultTCPMaxInFlight = 1024
)

// Config configures an Egress.
type Config struct {
	// MTU of the IPv4 side toward the B4s (the softwire's IPv4 MTU).
	MTU uint32
	// Output receives the IPv4 packets the egress sends back toward the
	// B4s, for the AFTR to encapsulate. Output owns the slice. It is called
	// from gVisor's and the relays' goroutines, never after Close returns;
	// it must not block and must not call Inject synchronously.
	Output func(pkt []byte)
	// Dialer opens the host sockets; nil uses the net package (NetDialer).
	Dialer HostDialer
	// Logger receives flow diagnostics at debug level; nil discards them.
	Logger *slog.Logger
	// UDPIdle closes a UDP or ping flow after this long without a packet
	// in either direction.
	UDPIdle time.Duration
	// TCPMaxInFlight bounds concurrent TCP connection attempts.
	TCPMaxInFlight int
	// Ping answers ICMP echo requests by pinging the destination from the
	// host with an unprivileged ICMP socket (Linux: needs the process's
	// group in net.ipv4.ping_group_range). When false, or when the host
	// refuses the socket, echo requests are dropped and counted.
	Ping bool
	// AllowLoopback relays flows to the host's loopback (127.0.0.0/8),
	// which reachable refuses otherwise. Lab use only: on a laptop lab the
	// "Internet" behind the AFTR is the laptop's own services.
	AllowLoopback bool
}

// Egress relays B4 flows to host sockets. Its methods are safe for concurrent
// use.
type Egress struct {
	cfg    Config
	log    *slog.Logger
	dialer HostDialer
	s      *netstack.Stack

	// ctx is cancelled by Close and bounds every host dial.
	ctx    context.Context
	cancel context.CancelFunc
	relays group
	closed atomic.Bool

	pingMu    sync.Mutex
	pingFlows map[pingKey]*pingFlow
	// pingDownUntil (UnixNano) drops echo requests after the host refused
	// a ping socket.
	pingDownUntil atomic.Int64
	ipID          atomic.Uint32

	tcp, udp, ping flowCounters
	echo           echoCounters
}

// New starts an egress.
func New(cfg Config) (*Egress, error) {
	if cfg.Output == nil {
		return nil, errors.New("egress: Config.Output is nil")
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.UDPIdle <= 0 {
		cfg.UDPIdle = DefaultUDPIdle
	}
	if cfg.TCPMaxInFlight <= 0 {
		cfg.TCPMaxInFlight = DefaultTCPMaxInFlight
	}
	e := &Egress{cfg: cfg, log: cfg.Logger, dialer: cfg.Dialer, pingFlows: make(map[pingKey]*pingFlow)}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.dialer == nil {
		e.dialer = &NetDialer{}
	}
	s, err := netstack.New(netstack.Options{
		Name:   "egress",
		MTU:    cfg.MTU,
		Output: cfg.Output,
		// Accept every destination and answer from it (GVISOR.md §1.3).
		Promiscuous:   true,
		AllowLoopback: cfg.AllowLoopback,
		Logger:        e.log,
	})
	if err != nil {
		return nil, err
	}
	e.s = s
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.relays.live = make(map[closer]struct{})

	tf := tcp.NewForwarder(s.Stack, 0, cfg.TCPMaxInFlight, e.handleTCP)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, tf.HandlePacket)
	// Not udp.Forwarder.HandlePacket: it clones every first packet of a
	// flow and never releases the clone (GVISOR.md §5.1); handleUDP builds
	// the same ForwarderRequest on the stack's own reference.
	s.SetTransportProtocolHandler(udp.ProtocolNumber, e.handleUDP)
	// In promiscuous mode gVisor never answers echo requests to the
	// addresses it does not own (GVISOR.md §5.3), but this version hands
	// them to a per-stack default handler first, after reassembly.
	s.SetTransportProtocolHandler(icmp.ProtocolNumber4, e.handleICMP)
	return e, nil
}

// Inject hands the egress one IPv4 packet from a B4, already decapsulated
// and checked by the AFTR. The egress copies pkt; the caller keeps it.
// Packets other than IPv4 are ignored.
func (e *Egress) Inject(pkt []byte) {
	if len(pkt) == 0 || pkt[0]>>4 != 4 || e.closed.Load() {
		return
	}
	e.s.Inject(pkt)
}

// Close aborts every relay, closes the host sockets and the stack, and waits
// for all the egress's goroutines. The relays are tracked here rather than
// left to Stack.Close, which did not abort forwarder endpoints in older
// gVisor (GVISOR.md §5.5) and never closes host sockets; Stack.Close comes
// before the wait because it is what aborts a handshake the forwarder is
// blocked in (CreateEndpoint waits for the B4's ACK).
func (e *Egress) Close() {
	if e.closed.Swap(true) {
		return
	}
	e.cancel()
	e.relays.abort()
	e.s.Close()
	e.relays.wait()
}

// Stats returns the flow counters.
func (e *Egress) Stats() Stats {
	st := Stats{
		TCP:  e.tcp.snapshot(),
		UDP:  e.udp.snapshot(),
		Ping: e.ping.snapshot(),
		Echo: e.echo.snapshot(),
	}
	st.TCPSYNDropped = e.s.Stats().TCP.ForwardMaxInFlightDrop.Value()
	return st
}

// relay is one flow's pair of connections (the gVisor side toward the B4 and
// the host side); closing it unblocks both directions.
type relay struct {
	once sync.Once
	in   net.Conn // gonet side
	out  net.Conn // host side; nil until dialled for UDP
	mu   sync.Mutex
	stop func() // extra cleanup (timers), under mu
}

func (r *relay) close() {
	r.once.Do(func() {
		r.mu.Lock()
		out, stop := r.out, r.stop
		r.mu.Unlock()
		if stop != nil {
			stop()
		}
		r.in.Close()
		if out != nil {
			out.Close()
		}
	})
}

// closer is a live flow Close must abort.
type closer interface{ close() }

// group tracks the live flows and every goroutine the egress runs, so that
// Close can abort the flows and wait for the goroutines.
type group struct {
	mu     sync.Mutex
	closed bool
	live   map[closer]struct{}
	wg     sync.WaitGroup
}

// enter accounts for one goroutine; false once the group is closed.
func (g *group) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

func (g *group) leave() { g.wg.Done() }

// track registers r; false once the group is closed, when the caller must
// close r itself.
func (g *group) track(r closer) bool {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return false
	}
	g.live[r] = struct{}{}
	g.mu.Unlock()
	return true
}

func (g *group) untrack(r closer) {
	g.mu.Lock()
	delete(g.live, r)
	g.mu.Unlock()
}

// abort refuses new work and closes the live flows.
func (g *group) abort() {
	g.mu.Lock()
	g.closed = true
	live := make([]closer, 0, len(g.live))
	for r := range g.live {
		live = append(live, r)
	}
	g.mu.Unlock()
	for _, r := range live {
		r.close()
	}
}

// wait waits for the goroutines.
func (g *group) wait() { g.wg.Wait() }
