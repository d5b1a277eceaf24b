// Package watertun is the alternative TUN backend, github.com/songgao/water
// in TUN mode: one packet per Read and per write(2), no offloads, on Linux,
// macOS (utun) and Windows (a TAP-Windows adapter in TUN emulation).
package watertun

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/songgao/water"

	"github.com/lw4o6/lw4o6/tun"
)

// Option configures Open.
type Option func(*water.Config)

// WithWindowsNetwork sets, on Windows, the CIDR the TAP-Windows driver
// answers ARP for in TUN emulation (water's Network; its default is
// 198.18.0.10/24). Elsewhere it changes nothing.
func WithWindowsNetwork(cidr string) Option { return func(c *water.Config) { setNetwork(c, cidr) } }

// Device is a TUN interface; it implements tun.Device.
type Device struct {
	ifce   *water.Interface
	name   string
	mtu    int
	closed atomic.Bool
	rmu    sync.Mutex
	wmu    sync.Mutex
}

var _ tun.Device = (*Device)(nil)

// Open creates the TUN interface name ("" lets the system choose; "utunN"
// on macOS; the adapter's friendly name on Windows). On Linux and macOS it
// sets the interface MTU to mtu; on Windows it only reports mtu, and the
// adapter's MTU is set with the system's tools.
func Open(name string, mtu int, opts ...Option) (*Device, error) {
	c := water.Config{DeviceType: water.TUN}
	setName(&c, name)
	for _, o := range opts {
		o(&c)
	}
	ifce, err := water.New(c)
	if err != nil {
		return nil, fmt.Errorf("watertun: %q: %w", name, err)
	}
	d := &Device{ifce: ifce, name: ifce.Name(), mtu: mtu}
	if err := setMTU(d.name, mtu); err != nil {
		ifce.Close()
		return nil, fmt.Errorf("watertun: %s: MTU %d: %w", d.name, mtu, err)
	}
	return d, nil
}

// Read implements tun.Device: one packet per call.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	d.rmu.Lock()
	defer d.rmu.Unlock()
	if len(bufs) == 0 || len(sizes) == 0 || len(bufs[0]) <= offset {
		return 0, io.ErrShortBuffer
	}
	for {
		if d.closed.Load() {
			return 0, tun.ErrClosed
		}
		n, err := d.ifce.Read(bufs[0][offset:])
		if err != nil {
			if d.closed.Load() || errors.Is(err, os.ErrClosed) {
				return 0, tun.ErrClosed
			}
			return 0, fmt.Errorf("%s: %w", d.name, err)
		}
		if n > 0 {
			sizes[0] = n
			return 1, nil
		}
	}
}

// Write implements tun.Device.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	if d.closed.Load() {
		return 0, tun.ErrClosed
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	sent := 0
	var first error
	for _, b := range bufs {
		if _, err := d.ifce.Write(b[offset:]); err != nil {
			if d.closed.Load() || errors.Is(err, os.ErrClosed) {
				return sent, tun.ErrClosed
			}
			if first == nil {
				first = fmt.Errorf("%s: %w", d.name, err)
			}
			continue
		}
		sent++
	}
	return sent, first
}

// BatchSize implements tun.Device: water reads one packet at a time.
func (d *Device) BatchSize() int { return 1 }

// MTU implements tun.Device.
func (d *Device) MTU() int { return d.mtu }

// Name implements tun.Device.
func (d *Device) Name() string { return d.name }

// Close implements tun.Device; the interface goes away with it.
func (d *Device) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	return d.ifce.Close()
}
