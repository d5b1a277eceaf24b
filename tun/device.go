// Package tun defines Device, the one interface through which the packet
// path moves whole IP packets in and out of the process, in batches and with
// headroom, whatever carries them: a TUN interface (wgtun, watertun), a raw
// IPv6 socket for IPv4-in-IPv6 (rawip6), a lab-only UDP underlay (udpunder)
// or another Device in memory (memtun).
//
// The contract follows wireguard-go's tun.Device, without its pitfalls: a
// caller of this Device never sees a minimum offset, a minimum batch length
// or ErrTooManySegments.
package tun

import (
	"errors"
	"fmt"
	"os"
)

// Headroom is the offset at which every Device in this tree reads and
// writes without copying. It leaves room for a 40-octet IPv6 header to be
// prepended in place (RFC 7596's IPv4-in-IPv6 encapsulation) and, in front
// of that, for the 16 octets wgtun keeps for its own header (a 10-octet
// virtio-net header on Linux, a 4-octet address family on macOS).
const Headroom = 64

// Errors shared by the Devices.
var (
	// ErrClosed is returned by Read and Write once Close has been called.
	// errors.Is(ErrClosed, os.ErrClosed) holds.
	ErrClosed = fmt.Errorf("tun: device closed: %w", os.ErrClosed)
	// ErrTooBig reports a packet longer than the Device's MTU.
	ErrTooBig = errors.New("tun: packet larger than the MTU")
	// ErrMalformed reports a packet the Device had to parse and could not,
	// such as an IPv6 packet whose Payload Length disagrees with its size.
	ErrMalformed = errors.New("tun: malformed packet")
)

// Device moves whole IP packets (IPv4 or IPv6 as the backend carries them;
// no link-layer, packet-information or virtio header) in batches.
//
// Ownership. The caller owns bufs, sizes and every array behind them. A
// Device touches them only during the call and keeps no reference after it
// returns. offset is the headroom: the octets in front of each packet,
// bufs[i][:offset], that belong to neither side's data. Callers should pass
// offset ≥ Headroom, so that a 40-octet IPv6 header can be prepended in
// place and no Device has to copy; every Device also accepts any offset ≥ 0
// at the price of a copy.
//
// Read blocks until at least one packet is available, then for each i < n
// writes packet i into bufs[i][offset:] and its length into sizes[i], and
// returns n, with 1 ≤ n ≤ min(len(bufs), len(sizes)). A short batch
// (n < len(bufs)) only means that fewer packets were waiting; the next Read
// may return more. Read never returns both n > 0 and an error. Offer
// len(bufs) ≥ BatchSize() and room for MTU() octets behind the offset in
// each buffer: a Device given fewer buffers keeps the rest of its batch for
// the next Read, and a packet that does not fit its buffer is dropped, never
// truncated (backends with counters count it). Read may overwrite every
// octet of bufs[i] for i < len(bufs), including the headroom. Transient
// conditions (a full socket buffer, an ICMP error on a UDP socket) are
// absorbed by the Device; an error from Read means the Device is closed
// (ErrClosed) or broken, and the caller should stop reading. One goroutine
// should read at a time; Devices serialize concurrent Reads.
//
// Write sends bufs[i][offset:] for each i, in order, and returns how many
// packets it sent. It attempts every packet: one it cannot send (too big,
// malformed, no route, no known peer) is dropped and Write goes on with the
// next, so n < len(bufs) if and only if err != nil, and err describes the
// first failure. Nothing is queued for a retry: a failed packet is lost, as
// on a congested link. Write may overwrite the headroom bufs[i][:offset]
// and, where the backend coalesces packets (wgtun on Linux), the packets
// themselves and bufs[i][len(bufs[i]):cap(bufs[i])]; the caller gets the
// buffers back when Write returns and must not rely on their contents. A
// backend that coalesces may report an approximate n on error. Write is safe
// for concurrent use, also with Read.
//
// BatchSize is the most packets one Read returns and the number of buffers
// a caller should offer; it never changes. MTU is the largest packet, IP
// header included, that the Device carries. Name identifies the Device in
// logs (an interface name, or the socket's addresses).
//
// Close releases the Device and unblocks a pending Read; afterwards Read
// and Write return ErrClosed. Close may be called more than once and
// concurrently with Read and Write; only the first call's error counts.
type Device interface {
	Read(bufs [][]byte, sizes []int, offset int) (int, error)
	Write(bufs [][]byte, offset int) (int, error)
	BatchSize() int
	MTU() int
	Name() string
	Close() error
}
