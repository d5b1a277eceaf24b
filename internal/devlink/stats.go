package devlink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lw4o6/lw4o6/tun"
)

// Kind sorts a device error by what the daemon does about it.
type Kind int

const (
	// KindClosed: the device was closed (by us at shutdown, or under us).
	KindClosed Kind = iota
	// KindTooBig: one packet longer than the device carries (tun.ErrTooBig,
	// EMSGSIZE); the next one may pass.
	KindTooBig
	// KindMalformed: one packet the device could not parse (tun.ErrMalformed).
	KindMalformed
	// KindTransient: a condition that passes (no buffer space, an ICMP
	// error on a socket, no route for one destination, an interrupted call).
	KindTransient
	// KindOther: anything else. A read error of this kind is fatal: the
	// device is broken or gone, and the daemon stops.
	KindOther
	numKinds
)

var kindNames = [numKinds]string{"closed", "too-big", "malformed", "transient", "other"}

func (k Kind) String() string {
	if k < 0 || k >= numKinds {
		return fmt.Sprintf("Kind(%d)", int(k))
	}
	return kindNames[k]
}

// Classify sorts err. Per-packet and passing errors are retried (reads) or
// dropped with the packet (writes); KindOther on a read ends the pump.
func Classify(err error) Kind {
	switch {
	case errors.Is(err, os.ErrClosed), errors.Is(err, net.ErrClosed): // tun.ErrClosed wraps os.ErrClosed
		return KindClosed
	case errors.Is(err, tun.ErrTooBig), errors.Is(err, syscall.EMSGSIZE):
		return KindTooBig
	case errors.Is(err, tun.ErrMalformed):
		return KindMalformed
	case errors.Is(err, syscall.ENOBUFS), errors.Is(err, syscall.ENOMEM),
		errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR),
		errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EADDRNOTAVAIL):
		return KindTransient
	}
	return KindOther
}

// Stats counts one device's read and write errors by kind, and limits the
// log lines they draw. Its methods accept a nil *Stats (nothing counted).
type Stats struct {
	role        string
	read, write [numKinds]atomic.Uint64
	readLog     logLimit
	writeLog    logLimit
}

// NewStats returns the counters of the device playing role ("access",
// "lan", "internet"): the role, not the device's name, names the counters,
// so that they keep their names whatever device is opened.
func NewStats(role string) *Stats { return &Stats{role: role} }

// Role is the role NewStats was given.
func (s *Stats) Role() string { return s.role }

// ReadErrors and WriteErrors return the count of one kind.
func (s *Stats) ReadErrors(k Kind) uint64  { return s.read[k].Load() }
func (s *Stats) WriteErrors(k Kind) uint64 { return s.write[k].Load() }

// Counters returns "device-ROLE-read-errors" and "device-ROLE-write-errors"
// (totals, always present) and "device-ROLE-read-errors-KIND" and
// "device-ROLE-write-errors-KIND" for each kind seen, ready to merge into a
// daemon's counters.
func (s *Stats) Counters() map[string]uint64 {
	m := map[string]uint64{}
	for _, d := range []struct {
		dir string
		c   *[numKinds]atomic.Uint64
	}{{"read", &s.read}, {"write", &s.write}} {
		var total uint64
		for k := Kind(0); k < numKinds; k++ {
			if v := d.c[k].Load(); v > 0 {
				m[fmt.Sprintf("device-%s-%s-errors-%s", s.role, d.dir, k)] = v
				total += v
			}
		}
		m[fmt.Sprintf("device-%s-%s-errors", s.role, d.dir)] = total
	}
	return m
}

// MergeCounters adds the counters of every Stats to m.
func MergeCounters(m map[string]uint64, stats ...*Stats) map[string]uint64 {
	for _, s := range stats {
		if s == nil {
			continue
		}
		for k, v := range s.Counters() {
			m[k] = v
		}
	}
	return m
}

func (s *Stats) countRead(k Kind) {
	if s != nil {
		s.read[k].Add(1)
	}
}

func (s *Stats) countWrite(k Kind) {
	if s != nil {
		s.write[k].Add(1)
	}
}

// logEvery is the least time between two warnings about one device's
// reads (or writes): a device failing on every packet must not flood the
// log, but the first failure is always shown.
const logEvery = 10 * time.Second

// logLimit lets one line through per logEvery and counts the others.
type logLimit struct {
	mu         sync.Mutex
	last       time.Time
	suppressed uint64
}

// allow reports whether to log now and how many lines were held back since
// the last one that was.
func (l *logLimit) allow(now time.Time) (bool, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < logEvery {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}

func (s *Stats) warn(log *slog.Logger, l *logLimit, msg string, dev tun.Device, k Kind, err error) {
	if log == nil {
		return
	}
	if ok, held := l.allow(time.Now()); ok {
		log.Warn(msg, "dev", dev.Name(), "kind", k.String(), "err", err, "not-logged-since-last", held)
	}
}

// Pump reads from dev as the package's Pump does, counting its errors in s.
// A per-packet or passing read error (see Classify) is counted, warned
// about at most once per 10 s, and the read retried after a back-off that
// grows while the errors go on; any other error ends the pump and is
// returned, naming the device. It returns nil when dev was closed.
func (s *Stats) Pump(dev tun.Device, handle func(pkt []byte), log *slog.Logger) error {
	if err := s.pump(dev, handle, log); err != nil {
		return fmt.Errorf("device %s: %w", dev.Name(), err)
	}
	return nil
}

// pump is Pump returning the read error as it came.
func (s *Stats) pump(dev tun.Device, handle func(pkt []byte), log *slog.Logger) error {
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
	l := new(logLimit)
	if s != nil {
		l = &s.readLog
	}
	failing := 0 // consecutive failed reads
	for {
		k, err := dev.Read(bufs, sizes, Headroom)
		for i := 0; i < k; i++ {
			handle(bufs[i][Headroom : Headroom+sizes[i]])
		}
		if err == nil {
			failing = 0
			continue
		}
		kind := Classify(err)
		s.countRead(kind)
		switch kind {
		case KindClosed:
			return nil
		case KindOther:
			return err
		}
		s.warn(log, l, "device read failed, retrying", dev, kind, err)
		failing++
		if d := retryDelay(failing); d > 0 {
			time.Sleep(d)
		}
	}
}

// retryDelay is the wait before the next read after the failing-th
// consecutive failure: none for the first few (a per-packet error says
// nothing about the next packet), then from 1 ms doubling to 250 ms, so
// that a device failing on every read does not spin a core.
func retryDelay(failing int) time.Duration {
	const free = 3
	if failing <= free {
		return 0
	}
	d := time.Millisecond << min(failing-free-1, 8)
	return min(d, 250*time.Millisecond)
}

// DeviceError is why a device's pump ended while its daemon still needed
// it.
type DeviceError struct {
	Role string // the Stats' role; "" without Stats
	Dev  string // the device's name
	Err  error  // the read error; nil when the device was closed under us
}

func (e *DeviceError) Error() string {
	what := "device"
	if e.Role != "" {
		what = e.Role + " device"
	}
	if e.Err == nil {
		return fmt.Sprintf("%s %s: closed while in use", what, e.Dev)
	}
	return fmt.Sprintf("%s %s: %v", what, e.Dev, e.Err)
}

func (e *DeviceError) Unwrap() error { return e.Err }

// Run is Pump for a daemon: when the pump ends while ctx is live — the
// device failed, or was closed or removed under the daemon — it logs an
// error naming the device and calls stop with a *DeviceError, so that the
// daemon exits non-zero instead of running on with no data path.
func (s *Stats) Run(ctx context.Context, stop context.CancelCauseFunc, dev tun.Device, handle func(pkt []byte), log *slog.Logger) {
	name := dev.Name()
	err := s.pump(dev, handle, log)
	if ctx.Err() != nil {
		return // the daemon is stopping and closed the device
	}
	e := &DeviceError{Dev: name, Err: err}
	if s != nil {
		e.Role = s.role
	}
	if log != nil {
		log.Error("device failed: stopping", "dev", name, "err", e)
	}
	stop(e)
}

// NewLink returns a Link writing to dev whose write errors s counts and
// warns about (at most once per 10 s; a device being closed is only
// counted).
func (s *Stats) NewLink(dev tun.Device, log *slog.Logger) *Link {
	l := NewLink(dev, log)
	l.stats = s
	return l
}
