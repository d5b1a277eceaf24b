// Package wgtun is the default TUN backend: wireguard-go's tun package,
// which drives a Linux TUN with TSO/USO offloads and batches of up to 128
// packets, a macOS utun, and a Windows wintun adapter.
//
// It hides what wireguard-go's Device asks of its callers: an offset of at
// least 10 octets (Linux, virtio-net header) or 4 (macOS, address family),
// len(bufs) ≥ BatchSize() lest Read fail with ErrTooManySegments, a Write
// count that is in octets on Linux, and an Events channel that must be
// drained. A caller that offers offset ≥ tun.Headroom and BatchSize()
// buffers gets wireguard-go's zero-copy path; any other call goes through a
// staging batch, one copy per packet.
package wgtun

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	wg "golang.zx2c4.com/wireguard/tun"

	"github.com/lw4o6/lw4o6/tun"
)

// headroom is the offset at which wireguard-go reads and writes: its own
// choice (device/send.go), above both platforms' minimum.
const headroom = 16

// Option configures Open.
type Option func(*config)

type config struct {
	offload bool
}

// WithoutOffload opens a plain Linux TUN (IFF_TUN|IFF_NO_PI, no
// IFF_VNET_HDR): one packet per Read, no segmentation or coalescing, and
// packets written as they are. Elsewhere it changes nothing.
func WithoutOffload() Option { return func(c *config) { c.offload = false } }

// Device is a TUN interface; it implements tun.Device.
type Device struct {
	dev    wg.Device
	name   string
	batch  int
	mtu    atomic.Int64
	closed atomic.Bool
	evDone chan struct{}

	rmu     sync.Mutex
	stage   [][]byte // a staging batch, made on first need
	ssizes  []int
	pending []int // indexes into stage of packets read but not yet returned

	wmu    sync.Mutex
	wstage [][]byte

	readErrors atomic.Uint64
}

var _ tun.Device = (*Device)(nil)

// Open creates (or, on Linux, attaches to) the TUN interface name with the
// given MTU. On macOS name is "utun" or "utunN"; on Windows it names a
// wintun adapter and needs wintun.dll beside the program and Administrator
// rights; on Linux it needs CAP_NET_ADMIN.
func Open(name string, mtu int, opts ...Option) (*Device, error) {
	c := config{offload: true}
	for _, o := range opts {
		o(&c)
	}
	dev, err := create(name, mtu, c)
	if err != nil {
		return nil, fmt.Errorf("wgtun: %q: %w", name, err)
	}
	d := &Device{dev: dev, batch: max(dev.BatchSize(), 1), evDone: make(chan struct{})}
	if d.name, err = dev.Name(); err != nil {
		dev.Close()
		return nil, fmt.Errorf("wgtun: %q: %w", name, err)
	}
	d.mtu.Store(int64(mtu))
	if m, err := dev.MTU(); err == nil && m > 0 {
		d.mtu.Store(int64(m))
	}
	go d.drainEvents()
	return d, nil
}

// drainEvents consumes wireguard-go's events, whose senders block when
// nobody reads, and keeps the MTU current.
func (d *Device) drainEvents() {
	defer close(d.evDone)
	for ev := range d.dev.Events() {
		if ev&wg.EventMTUUpdate != 0 && !d.closed.Load() {
			if m, err := d.dev.MTU(); err == nil && m > 0 {
				d.mtu.Store(int64(m))
			}
		}
	}
}

// Unwrap returns wireguard-go's Device, for what only it offers (such as a
// wintun adapter's LUID). Read and Write must still go through d.
func (d *Device) Unwrap() wg.Device { return d.dev }

// ReadErrors counts packets that wireguard-go failed to decode (a bad
// virtio-net header or offload request) and Read skipped.
func (d *Device) ReadErrors() uint64 { return d.readErrors.Load() }

// Read implements tun.Device.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	d.rmu.Lock()
	defer d.rmu.Unlock()
	limit := min(len(bufs), len(sizes))
	if limit == 0 {
		return 0, io.ErrShortBuffer
	}
	bufs, sizes = bufs[:limit], sizes[:limit]
	for {
		if len(d.pending) > 0 {
			if n := d.unstage(bufs, sizes, offset); n > 0 {
				return n, nil
			}
			continue
		}
		if d.closed.Load() {
			return 0, tun.ErrClosed
		}
		direct := limit >= d.batch && offset >= headroom
		var n int
		var err error
		if direct {
			n, err = d.dev.Read(bufs, sizes, offset)
		} else {
			d.makeStage()
			n, err = d.dev.Read(d.stage, d.ssizes, headroom)
		}
		if n > 0 { // with ErrTooManySegments, n packets are still good
			if !direct {
				for i := range n {
					d.pending = append(d.pending, i)
				}
				continue
			}
			if n = fit(bufs, sizes, offset, n); n > 0 {
				return n, nil
			}
			continue
		}
		if err == nil {
			continue
		}
		if d.closed.Load() || errors.Is(err, os.ErrClosed) {
			return 0, tun.ErrClosed
		}
		if !ioFailure(err) {
			d.readErrors.Add(1) // one bad packet, or the netlink listener's end
			continue
		}
		return 0, fmt.Errorf("%s: %w", d.name, err)
	}
}

// ioFailure tells a failure of the device's file from wireguard-go's
// complaints about one packet's virtio-net header, which are plain errors.
func ioFailure(err error) bool {
	var pe *os.PathError
	var se *os.SyscallError
	return errors.As(err, &pe) || errors.As(err, &se)
}

// fit drops the packets that wireguard-go could not fit behind offset in
// their buffers (it truncates them silently) and returns how many are left.
func fit(bufs [][]byte, sizes []int, offset, n int) int {
	k := 0
	for i := range n {
		if offset+sizes[i] > len(bufs[i]) || offset+sizes[i] > len(bufs[k]) {
			continue
		}
		if k != i {
			sizes[k] = copy(bufs[k][offset:], bufs[i][offset:offset+sizes[i]])
		}
		k++
	}
	return k
}

// makeStage allocates the staging batch once: room for a 64 KiB packet in
// the first buffer, as wireguard-go's reads allow, and for an MTU-sized
// segment in the others.
func (d *Device) makeStage() {
	seg := headroom + max(d.MTU(), 1500)
	if d.stage != nil && len(d.stage[len(d.stage)-1]) >= seg {
		return
	}
	d.stage = make([][]byte, d.batch)
	d.ssizes = make([]int, d.batch)
	d.stage[0] = make([]byte, headroom+65535)
	for i := 1; i < d.batch; i++ {
		d.stage[i] = make([]byte, seg)
	}
	d.pending = make([]int, 0, d.batch)
}

// unstage copies pending staged packets into the caller's buffers.
func (d *Device) unstage(bufs [][]byte, sizes []int, offset int) int {
	n, used := 0, 0
	for _, i := range d.pending {
		if n == len(bufs) {
			break
		}
		used++
		size := d.ssizes[i]
		if size > len(d.stage[i])-headroom || offset+size > len(bufs[n]) {
			continue // does not fit: dropped
		}
		sizes[n] = copy(bufs[n][offset:], d.stage[i][headroom:headroom+size])
		n++
	}
	d.pending = d.pending[:copy(d.pending, d.pending[used:])]
	return n
}

// Write implements tun.Device.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	if d.closed.Load() {
		return 0, tun.ErrClosed
	}
	if len(bufs) == 0 {
		return 0, nil
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	src, off := bufs, offset
	if offset < headroom {
		for len(d.wstage) < len(bufs) {
			d.wstage = append(d.wstage, make([]byte, headroom, headroom+1500))
		}
		for i, b := range bufs {
			d.wstage[i] = append(d.wstage[i][:headroom], b[offset:]...)
		}
		src, off = d.wstage[:len(bufs)], headroom
	}
	n, err := writeAll(d.dev, src, off)
	if err == nil {
		return n, nil
	}
	if d.closed.Load() || errors.Is(err, os.ErrClosed) {
		return n, tun.ErrClosed
	}
	return n, fmt.Errorf("%s: %w", d.name, err)
}

// BatchSize implements tun.Device: 128 on Linux with offloads, else 1.
func (d *Device) BatchSize() int { return d.batch }

// MTU implements tun.Device. It follows the interface's MTU as the
// operating system reports changes.
func (d *Device) MTU() int { return int(d.mtu.Load()) }

// Name implements tun.Device.
func (d *Device) Name() string { return d.name }

// Close implements tun.Device. It removes the interface unless it was
// made persistent beforehand.
func (d *Device) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	err := d.dev.Close()
	select { // wireguard-go closes its Events channel on Close
	case <-d.evDone:
	case <-time.After(2 * time.Second):
	}
	return err
}
