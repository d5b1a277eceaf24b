// Package devlink joins a twin's packet path to a tun.Device: Pump reads
// batches from the device and hands each packet to a handler; Link turns the
// twin's Send into device writes, with headroom so nothing is copied twice.
package devlink

import (
	"log/slog"
	"sync"
	"time"

	"github.com/lw4o6/lw4o6/tun"
)

// Headroom is left in front of every packet read, so that a 40-octet IPv6
// header can be prepended in place (and a device's own header after it).
const Headroom = tun.Headroom

// Pump reads from dev until it fails or is closed and calls handle for each
// packet. handle may rewrite the packet but must not retain it. It returns
// nil when dev was closed; it retries the errors Classify calls per-packet
// or passing, as Stats.Pump does, without counting them.
func Pump(dev tun.Device, handle func(pkt []byte), log *slog.Logger) error {
	return (*Stats)(nil).Pump(dev, handle, log)
}

// Link sends packets on a device. It is safe for concurrent use.
type Link struct {
	dev   tun.Device
	log   *slog.Logger
	stats *Stats // may be nil
	wlog  logLimit
	pool  sync.Pool
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
	if _, err := l.dev.Write([][]byte{b}, Headroom); err != nil {
		l.writeFailed(err)
	}
	l.pool.Put(bp)
}

// writeFailed counts a write error and warns about it, at most once per
// 10 s: the packet is lost either way (the device contract queues nothing),
// but a device that drops every packet must show. Writes to a device being
// closed are only counted.
func (l *Link) writeFailed(err error) {
	k := Classify(err)
	l.stats.countWrite(k)
	if k == KindClosed || l.log == nil {
		return
	}
	lim := &l.wlog
	if l.stats != nil {
		lim = &l.stats.writeLog
	}
	if ok, held := lim.allow(time.Now()); ok {
		l.log.Warn("device write failed, packet dropped", "dev", l.dev.Name(), "kind", k.String(), "err", err, "not-logged-since-last", held)
	}
}
