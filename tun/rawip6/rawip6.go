// Package rawip6 is the standard lw4o6 access side (RFC 7596, RFC 2473):
// a raw IPv6 socket for next header 4 (IPPROTO_IPIP) that receives the
// IPv4-in-IPv6 packets addressed to a local address and sends them, behind
// the tun.Device interface. Linux only; it needs CAP_NET_RAW. Elsewhere
// Open fails with ErrNotSupported.
//
// A raw IPv6 socket hands over only what follows the IPv6 header (RFC 3542
// §3), and the kernel builds the header of what it sends. The Device still
// presents whole IPv6 packets, as the packet path expects:
//
//   - Read rebuilds the IPv6 header in front of the payload: source from
//     recvmsg's address, destination from IPV6_PKTINFO (the bound address),
//     next header 4, hop limit from IPV6_HOPLIMIT and traffic class from
//     IPV6_TCLASS. The flow label and any extension headers are gone (the
//     kernel has already reassembled fragments). So it needs offset ≥ 0 and
//     room for 40+payload octets, no headroom.
//   - Write sends the caller's packets as they are with IPV6_HDRINCL, so
//     extension headers (the Fragment header of an outer IPv6 packet the
//     AFTR fragmented itself), the flow label and ICMPv6 messages (an AFTR's
//     Destination Unreachable code 5, RFC 7596 §6.2) go out unchanged; the
//     kernel routes them by their destination and does not fragment them.
//     WithKernelHeader selects the other way: the kernel builds the header
//     from the packet's source, traffic class and hop limit, given as
//     ancillary data.
//
// WithICMPv6 opens a second raw socket for ICMPv6 (RFC 4443) with an
// ICMP6_FILTER that passes only the given types, so that an lwB4 sees the
// Destination Unreachable messages its AFTR sends; they are presented as
// whole IPv6 packets with next header 58.
package rawip6

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/lw4o6/lw4o6/tun"
)

// ErrNotSupported is returned by Open on systems other than Linux.
var ErrNotSupported = errors.New("rawip6: raw IPv6 sockets for IPv4-in-IPv6 are supported on Linux only")

// Defaults and limits.
const (
	DefaultMTU = 1500
	// BatchSize is the most packets one Read returns (one recvmmsg).
	BatchSize = 64
	// icmpQueue is how many ICMPv6 messages wait for Read before more are
	// dropped.
	icmpQueue = 64
)

// IP protocol numbers.
const (
	protoIPIP   = 4  // IPv4 encapsulation (RFC 2003, RFC 2473)
	protoICMPv6 = 58 // RFC 4443
)

// Option configures Open.
type Option func(*config)

type config struct {
	mtu          int
	icmpTypes    []uint8
	kernelHeader bool
	freeBind     bool
	groups       []netip.Addr
}

// WithGroup also receives packets to the IPv6 multicast group g (joined on
// the interface of the local address): an lwB4 listens there for its
// AFTR's restart ANNOUNCE (RFC 6887 §14.1.3). Linux only.
func WithGroup(g netip.Addr) Option {
	return func(c *config) { c.groups = append(c.groups, g) }
}

// WithMTU sets the largest IPv6 packet the Device reports carrying (default
// DefaultMTU): the access link's MTU.
func WithMTU(n int) Option { return func(c *config) { c.mtu = n } }

// WithICMPv6 also receives ICMPv6 messages of the given types for the local
// address (type 1, Destination Unreachable, when none is given; add 2,
// Packet Too Big, to learn the path MTU).
func WithICMPv6(types ...uint8) Option {
	return func(c *config) {
		if len(types) == 0 {
			types = []uint8{1}
		}
		c.icmpTypes = append([]uint8(nil), types...)
	}
}

// WithKernelHeader makes Write send only the payload of each packet and let
// the kernel build the IPv6 header, taking the packet's source address
// (IPV6_PKTINFO; it must be local), traffic class (IPV6_TCLASS) and hop
// limit (IPV6_HOPLIMIT) as ancillary data. The kernel may then fragment,
// but packets with extension headers cannot be sent, the flow label is
// lost, and ICMPv6 packets need WithICMPv6.
func WithKernelHeader() Option { return func(c *config) { c.kernelHeader = true } }

// WithFreeBind binds to the local address even if it is not (yet) an
// address of this host, as while Duplicate Address Detection still holds it
// tentative (RFC 4862 §5.4) after a boot or a renumbering (IPV6_FREEBIND).
// Without it Open fails then.
func WithFreeBind() Option { return func(c *config) { c.freeBind = true } }

// Stats counts what a Device did; each field is a running total.
type Stats struct {
	RxPackets, RxICMPv6, TxPackets uint64
	// DropTruncated: packets longer than the buffer Read was given.
	DropTruncated uint64
	// DropICMPv6Queue: ICMPv6 messages dropped because Read was not called.
	DropICMPv6Queue uint64
	// DropMalformed: packets Write was given that are no sendable IPv6
	// packet (tun.ErrMalformed).
	DropMalformed uint64
	// TxErrors: packets the kernel refused (no route, too big, ...).
	TxErrors uint64
}

type counters struct {
	rx, rxICMP, tx, truncated, icmpQueue, malformed, txErrors atomic.Uint64
}

// Device is a raw IPv6 access socket; it implements tun.Device.
type Device struct {
	local  netip.Addr
	name   string
	cfg    config
	closed atomic.Bool
	st     counters
	sys    // per operating system
}

var _ tun.Device = (*Device)(nil)

// Open opens the raw socket(s) bound to local, an IPv6 address of this
// host (the B4's or the AFTR's); the unspecified address :: receives for
// every local address. Link-local addresses need a zone.
func Open(local netip.Addr, opts ...Option) (*Device, error) {
	if !local.Is6() || local.Is4In6() {
		return nil, fmt.Errorf("rawip6: %v is not an IPv6 address", local)
	}
	c := config{mtu: DefaultMTU}
	for _, o := range opts {
		o(&c)
	}
	d := &Device{local: local, name: "rawip6:" + local.String(), cfg: c}
	if err := d.open(); err != nil {
		return nil, err
	}
	return d, nil
}

// LocalAddr is the address the Device is bound to.
func (d *Device) LocalAddr() netip.Addr { return d.local }

// Stats returns the counters.
func (d *Device) Stats() Stats {
	return Stats{
		RxPackets: d.st.rx.Load(), RxICMPv6: d.st.rxICMP.Load(), TxPackets: d.st.tx.Load(),
		DropTruncated: d.st.truncated.Load(), DropICMPv6Queue: d.st.icmpQueue.Load(),
		DropMalformed: d.st.malformed.Load(), TxErrors: d.st.txErrors.Load(),
	}
}

// BatchSize implements tun.Device.
func (d *Device) BatchSize() int { return BatchSize }

// MTU implements tun.Device.
func (d *Device) MTU() int { return d.cfg.mtu }

// Name implements tun.Device.
func (d *Device) Name() string { return d.name }
