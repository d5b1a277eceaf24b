// Package devlink joins a twin's packet path to a tun.Device: Pump reads
// batches from the device and hands each packet to a handler; Link turns the
// twin's Send into device writes, with headroom so nothing is copied twice.
package devlink

import (
	"errors"
	"log/slog"
	"os"
	"sync"

	"github.com/lw4o6/lw4o6/tun"
)

// Headroom is left in front of every packet read, so that a 40-octet IPv6
// header can be prepended in place (and a device's own header after it).
const Headroom = tun.Headroom

// Pump reads from dev until it fails or is closed and calls handle for each
// packet. handle may rewrite the packet but must not retain it. It returns
// nil when dev was closed.
func Pump(dev tun.Device, handle func(pkt []byte), log *slog.Logger) error {
	n := max(dev.BatchSize(), 1)
	size := Headroom + dev.MTU() + 64
	if size < Headroom+65535 {
		size = Headroom + 65535 // offload devices may hand us 64 KiB segments
	}
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	sizes := make([]int, n)
	for {
		k, err := dev.Read(bufs, sizes, Headroom)
		for i := 0; i < k; i++ {
			handle(bufs[i][Headroom : Headroom+sizes[i]])
		}
		if err != nil {
			if errors.Is(err, os.ErrClosed) || errors.Is(err, tun.ErrClosed) {
				return nil
			}
			if log != nil {
				log.Debug("device read", "dev", dev.Name(), "err", err)
			}
			return err
		}
	}
}

// Link sends packets on a device. It is safe for concurrent use.
type Link struct {
	dev  tun.Device
	log  *slog.Logger
	pool sync.Pool
}

// NewLink returns a Link writing to dev.
func NewLink(dev tun.Device, log *slog.Logger) *Link {
	l := &Link{dev: dev, log: log}
	l.pool.New = func() any { b := make([]byte, Headroom+65535); return &b }
	return l
}

// Send writes one packet; it copies pkt behind Headroom octets, as the
// device contract asks, and never retains it.
func (l *Link) Send(pkt []byte) {
	bp := l.pool.Get().(*[]byte)
	if cap(*bp) < Headroom+len(pkt) {
		// Larger than any IP datagram, e.g. an encapsulated 65535-octet
		// IPv4 packet: the device will most likely refuse it, but that is
		// its call, not a panic here.
		*bp = make([]byte, Headroom+len(pkt))
	}
	b := (*bp)[:Headroom+len(pkt)]
	copy(b[Headroom:], pkt)
	if _, err := l.dev.Write([][]byte{b}, Headroom); err != nil && l.log != nil {
		l.log.Debug("device write", "dev", l.dev.Name(), "err", err)
	}
	l.pool.Put(bp)
}
