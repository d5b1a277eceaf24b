// Package udpunder is a lab underlay, NOT a standard one: it carries one
// whole IPv6 packet per UDP datagram, so that an lwB4 and an lwAFTR can
// talk over loopback or any IPv4 network without CAP_NET_RAW or a real IPv6
// path. RFC 7596 defines no such encapsulation and nothing interoperates
// with it; use rawip6 for the standard access side.
//
// A client (the B4) sends every packet to one fixed peer and accepts
// datagrams only from it. A server (the AFTR) learns, from each datagram it
// receives, the UDP endpoint of the packet's IPv6 source address, and sends
// each packet to the endpoint learned for its IPv6 destination. The table
// is bounded and its entries expire; a packet for an address with no
// endpoint is dropped and counted.
//
// Without WithBinding, anyone who can send the server a datagram can claim
// any IPv6 source. With it, an address whose endpoint was bound by a
// handshake (the AFTR: a PCP request answered with success) keeps that
// endpoint until a fresh successful handshake moves it; other datagrams
// with that source from elsewhere are dropped. What it still does not
// protect: an address never bound by a handshake (a statically bound B4)
// is learned from any datagram, and whoever completes the handshake first
// (a sender that can win the B4's PCP binding) binds the address, and a
// table full of bound entries (WithEndpoints) makes room by dropping the
// oldest of them (unbound entries go first). Keep the underlay on a lab
// network.
package udpunder

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lw4o6/lw4o6/tun"
)

// ErrNoEndpoint reports, from a server's Write, a packet whose IPv6
// destination has no learned UDP endpoint.
var ErrNoEndpoint = errors.New("udpunder: no UDP endpoint learned for the IPv6 destination")

// Defaults of the options.
const (
	DefaultMTU       = 1500
	DefaultEndpoints = 65536
	DefaultExpiry    = 10 * time.Minute
)

// Option configures a Device.
type Option func(*config)

type config struct {
	mtu       int
	endpoints int
	expiry    time.Duration
	now       func() time.Time
	claim     func([]byte) (uint64, bool)
	answer    func([]byte) (uint64, bool, bool)
}

// WithMTU sets the largest IPv6 packet carried (default DefaultMTU), which
// is also the largest UDP payload sent and received.
func WithMTU(n int) Option { return func(c *config) { c.mtu = n } }

// WithEndpoints bounds a server's table of learned endpoints (default
// DefaultEndpoints). When it is full, expired entries are swept and then the
// least recently seen entry makes room.
func WithEndpoints(n int) Option { return func(c *config) { c.endpoints = n } }

// WithExpiry sets how long a server keeps an endpoint it has not heard from
// (default DefaultExpiry). A B4 refreshes its entry with every packet it
// sends, PCP renewals included.
func WithExpiry(d time.Duration) Option { return func(c *config) { c.expiry = d } }

// WithBinding makes a server bind endpoints by a handshake (see the
// package comment). claim reports a received packet that may bind its
// IPv6 source to the datagram's endpoint (a request), with an id that its
// answer carries too (a PCP nonce); answer reports a packet being sent that
// answers the claim with that id for its IPv6 destination, and whether it
// grants the binding. The answer goes to the claimant's endpoint either
// way; a grant makes it the bound endpoint. Claims with different ids
// wait side by side, so a forged claim cannot capture another's answer.
func WithBinding(claim func(pkt []byte) (id uint64, ok bool), answer func(pkt []byte) (id uint64, isAnswer, granted bool)) Option {
	return func(c *config) { c.claim, c.answer = claim, answer }
}

// Stats counts what a Device did. Each field is a running total.
type Stats struct {
	RxPackets, TxPackets uint64
	// DropMalformed: datagrams that are no IPv6 packet (version, length).
	DropMalformed uint64
	// DropForeign: datagrams a client received from someone not its peer.
	DropForeign uint64
	// DropNoEndpoint: packets a server had no endpoint for (ErrNoEndpoint).
	DropNoEndpoint uint64
	// DropTxError: packets the socket refused.
	DropTxError uint64
	// DropUnbound: with WithBinding, datagrams whose IPv6 source is bound
	// to another endpoint and that claimed nothing.
	DropUnbound uint64
	// Bound: with WithBinding, endpoints bound or moved by a handshake.
	Bound uint64
	// Learned, Moved, Expired, Evicted: a server's table entries created,
	// re-pointed at a new endpoint, timed out, and pushed out when full.
	Learned, Moved, Expired, Evicted uint64
	// Endpoints is the number of entries in the table now.
	Endpoints int
}

// Device is a UDP underlay endpoint; it implements tun.Device.
type Device struct {
	conn   *net.UDPConn
	name   string
	mtu    int
	peer   netip.AddrPort // client: the fixed peer; server: invalid
	table  *table         // server only
	claim  func([]byte) (uint64, bool)
	answer func([]byte) (uint64, bool, bool)
	closed atomic.Bool
	rmu    sync.Mutex

	rx, tx, malformed, foreign, noEndpoint, txError, unbound atomic.Uint64
}

var _ tun.Device = (*Device)(nil)

func newConfig(opts []Option) config {
	c := config{mtu: DefaultMTU, endpoints: DefaultEndpoints, expiry: DefaultExpiry, now: time.Now}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// NewClient opens the B4 side: a UDP socket on local (HOST:PORT; "" picks
// any port of the peer's address family) that exchanges packets with peer
// (the server's HOST:PORT) only.
func NewClient(local, peer string, opts ...Option) (*Device, error) {
	c := newConfig(opts)
	pa, err := net.ResolveUDPAddr("udp", peer)
	if err != nil {
		return nil, fmt.Errorf("udpunder: peer %q: %w", peer, err)
	}
	network := "udp6"
	if pa.IP.To4() != nil {
		network = "udp4"
	}
	var la *net.UDPAddr
	if local != "" {
		if la, err = net.ResolveUDPAddr(network, local); err != nil {
			return nil, fmt.Errorf("udpunder: local %q: %w", local, err)
		}
	}
	conn, err := net.ListenUDP(network, la)
	if err != nil {
		return nil, fmt.Errorf("udpunder: %w", err)
	}
	sizeBuffers(conn)
	d := &Device{conn: conn, mtu: c.mtu, peer: pa.AddrPort()}
	d.peer = netip.AddrPortFrom(d.peer.Addr().Unmap(), d.peer.Port())
	d.name = fmt.Sprintf("udp:%v->%v", conn.LocalAddr(), d.peer)
	return d, nil
}

// NewServer opens the AFTR side: a UDP socket on local (HOST:PORT) that
// learns its peers from the datagrams it receives.
func NewServer(local string, opts ...Option) (*Device, error) {
	c := newConfig(opts)
	la, err := net.ResolveUDPAddr("udp", local)
	if err != nil {
		return nil, fmt.Errorf("udpunder: local %q: %w", local, err)
	}
	conn, err := net.ListenUDP("udp", la)
	if err != nil {
		return nil, fmt.Errorf("udpunder: %w", err)
	}
	sizeBuffers(conn)
	d := &Device{conn: conn, mtu: c.mtu, table: newTable(c.endpoints, c.expiry, c.now), claim: c.claim, answer: c.answer}
	d.name = fmt.Sprintf("udp:%v", conn.LocalAddr())
	return d, nil
}

// LocalAddr is the address of the UDP socket.
func (d *Device) LocalAddr() netip.AddrPort {
	return d.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Endpoint returns the UDP endpoint a server has learned for addr.
func (d *Device) Endpoint(addr netip.Addr) (netip.AddrPort, bool) {
	if d.table == nil {
		return netip.AddrPort{}, false
	}
	return d.table.lookup(addr.As16())
}

// Stats returns the counters.
func (d *Device) Stats() Stats {
	s := Stats{
		RxPackets: d.rx.Load(), TxPackets: d.tx.Load(),
		DropMalformed: d.malformed.Load(), DropForeign: d.foreign.Load(),
		DropNoEndpoint: d.noEndpoint.Load(), DropTxError: d.txError.Load(),
		DropUnbound: d.unbound.Load(),
	}
	if d.table != nil {
		d.table.stats(&s)
	}
	return s
}

// Read implements tun.Device: one datagram, so one packet, per call.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	d.rmu.Lock()
	defer d.rmu.Unlock()
	if len(bufs) == 0 || len(sizes) == 0 || len(bufs[0]) < offset+40 {
		return 0, fmt.Errorf("%s: Read: no room for an IPv6 packet at offset %d: %w", d.name, offset, io.ErrShortBuffer)
	}
	b := bufs[0][offset:]
	for {
		n, from, err := d.conn.ReadFromUDPAddrPort(b)
		if err != nil {
			if d.closed.Load() || errors.Is(err, net.ErrClosed) {
				return 0, tun.ErrClosed
			}
			if transient(err) {
				continue
			}
			return 0, fmt.Errorf("%s: %w", d.name, err)
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if d.table == nil && from != d.peer {
			d.foreign.Add(1)
			continue
		}
		if !validIPv6(b[:n]) {
			d.malformed.Add(1)
			continue
		}
		if d.table != nil && !d.receive(b[:n], from) {
			d.unbound.Add(1)
			continue
		}
		d.rx.Add(1)
		sizes[0] = n
		return 1, nil
	}
}

// Write implements tun.Device.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	if d.closed.Load() {
		return 0, tun.ErrClosed
	}
	var first error
	fail := func(err error) {
		if first == nil {
			first = err
		}
	}
	sent := 0
	for _, b := range bufs {
		pkt := b[offset:]
		if len(pkt) > d.mtu {
			d.txError.Add(1)
			fail(fmt.Errorf("%s: %d octets: %w", d.name, len(pkt), tun.ErrTooBig))
			continue
		}
		to := d.peer
		if d.table != nil {
			if !validIPv6(pkt) {
				d.malformed.Add(1)
				fail(fmt.Errorf("%s: %w", d.name, tun.ErrMalformed))
				continue
			}
			var ok bool
			if to, ok = d.sendTo(pkt); !ok {
				d.noEndpoint.Add(1)
				fail(fmt.Errorf("%s: %v: %w", d.name, netip.AddrFrom16([16]byte(pkt[24:40])), ErrNoEndpoint))
				continue
			}
		}
		if _, err := d.conn.WriteToUDPAddrPort(pkt, to); err != nil {
			if d.closed.Load() || errors.Is(err, net.ErrClosed) {
				return sent, tun.ErrClosed
			}
			d.txError.Add(1)
			fail(fmt.Errorf("%s: %w", d.name, err))
			continue
		}
		sent++
		d.tx.Add(1)
	}
	return sent, first
}

// receive records what a server's datagram from ep says of its IPv6
// source, and reports whether to deliver it.
func (d *Device) receive(pkt []byte, ep netip.AddrPort) bool {
	src := [16]byte(pkt[8:24])
	if d.claim == nil {
		d.table.learn(src, ep)
		return true
	}
	if id, ok := d.claim(pkt); ok {
		d.table.propose(src, id, ep)
		return true
	}
	return d.table.learnUnbound(src, ep)
}

// sendTo is the endpoint a server sends pkt to.
func (d *Device) sendTo(pkt []byte) (netip.AddrPort, bool) {
	dst := [16]byte(pkt[24:40])
	if d.answer != nil {
		if id, isAnswer, granted := d.answer(pkt); isAnswer {
			if ep, ok := d.table.settle(dst, id, granted); ok {
				return ep, true
			}
		}
	}
	return d.table.lookup(dst)
}

// BatchSize implements tun.Device: a UDP socket reads one datagram a call.
func (d *Device) BatchSize() int { return 1 }

// MTU implements tun.Device.
func (d *Device) MTU() int { return d.mtu }

// Name implements tun.Device.
func (d *Device) Name() string { return d.name }

// Close implements tun.Device.
func (d *Device) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	return d.conn.Close()
}

// validIPv6 reports whether p is an IPv6 packet whose Payload Length
// accounts for exactly its size (RFC 8200 §3); jumbograms are not carried.
func validIPv6(p []byte) bool {
	return len(p) >= 40 && p[0]>>4 == 6 && int(p[4])<<8|int(p[5]) == len(p)-40
}

// socketBuffer is asked for on each underlay socket: a burst of a few
// hundred full-size packets fits, so a briefly descheduled reader does not
// lose a whole TCP window (the kernel caps it at net.core.rmem_max; a
// smaller buffer only means more loss, never an error).
const socketBuffer = 4 << 20

func sizeBuffers(c *net.UDPConn) {
	c.SetReadBuffer(socketBuffer)
	c.SetWriteBuffer(socketBuffer)
}
