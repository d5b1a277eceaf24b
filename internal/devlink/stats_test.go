package devlink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/tun"
)

// step is one Read's outcome: a packet or an error.
type step struct {
	pkt []byte
	err error
}

// scriptDev plays its steps to Read, one per call, then blocks until
// Close; Write returns writeErr.
type scriptDev struct {
	steps    chan step
	done     chan struct{}
	once     sync.Once
	writeErr error
}

func newScriptDev(steps ...step) *scriptDev {
	d := &scriptDev{steps: make(chan step, len(steps)), done: make(chan struct{})}
	for _, s := range steps {
		d.steps <- s
	}
	return d
}

func (d *scriptDev) Read(bufs [][]byte, sizes []int, off int) (int, error) {
	select {
	case s := <-d.steps:
		if s.err != nil {
			return 0, s.err
		}
		sizes[0] = copy(bufs[0][off:], s.pkt)
		return 1, nil
	case <-d.done:
		return 0, tun.ErrClosed
	}
}

func (d *scriptDev) Write(bufs [][]byte, off int) (int, error) {
	if d.writeErr != nil {
		return 0, d.writeErr
	}
	return len(bufs), nil
}
func (d *scriptDev) BatchSize() int { return 4 }
func (d *scriptDev) MTU() int       { return 1500 }
func (d *scriptDev) Name() string   { return "script0" }
func (d *scriptDev) Close() error   { d.once.Do(func() { close(d.done) }); return nil }

// logBuf is a logger writing text lines to a buffer safe to read while
// the pump runs.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }
func (l *logBuf) logger() *slog.Logger        { return slog.New(slog.NewTextHandler(l, nil)) }

var errGone = errors.New("device gone") // no kind Classify knows: fatal

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err  error
		want Kind
	}{
		{tun.ErrClosed, KindClosed},
		{fmt.Errorf("x: %w", tun.ErrTooBig), KindTooBig},
		{syscall.EMSGSIZE, KindTooBig},
		{fmt.Errorf("x: %w", tun.ErrMalformed), KindMalformed},
		{fmt.Errorf("recvmmsg: %w", syscall.ENOBUFS), KindTransient},
		{syscall.ECONNREFUSED, KindTransient},
		{syscall.EBADF, KindOther},
		{syscall.EIO, KindOther},
		{errGone, KindOther},
	} {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// Per-packet and passing read errors are counted and the pump goes on
// (the packets after them are delivered); a fatal one ends it with an
// error naming the device. One warning line, not one per error.
func TestPumpRetriesTransientStopsOnFatal(t *testing.T) {
	d := newScriptDev(
		step{pkt: []byte{1}},
		step{err: fmt.Errorf("x: %w", tun.ErrTooBig)},
		step{err: fmt.Errorf("x: %w", tun.ErrMalformed)},
		step{err: fmt.Errorf("x: %w", syscall.ENOBUFS)},
		step{pkt: []byte{2}},
		step{err: errGone},
		step{pkt: []byte{3}}, // never read
	)
	st := NewStats("access")
	var lb logBuf
	var got []byte
	err := st.Pump(d, func(p []byte) { got = append(got, p...) }, lb.logger())
	if !errors.Is(err, errGone) || !strings.Contains(err.Error(), "script0") {
		t.Fatalf("Pump = %v, want an error naming script0 and wrapping %v", err, errGone)
	}
	if !bytes.Equal(got, []byte{1, 2}) {
		t.Errorf("handled %v, want [1 2]", got)
	}
	for k, want := range map[Kind]uint64{KindTooBig: 1, KindMalformed: 1, KindTransient: 1, KindOther: 1, KindClosed: 0} {
		if n := st.ReadErrors(k); n != want {
			t.Errorf("read errors %v = %d, want %d", k, n, want)
		}
	}
	m := st.Counters()
	if m["device-access-read-errors"] != 4 || m["device-access-read-errors-too-big"] != 1 || m["device-access-write-errors"] != 0 {
		t.Errorf("Counters = %v", m)
	}
	if _, ok := m["device-access-read-errors-closed"]; ok {
		t.Errorf("Counters shows a zero kind: %v", m)
	}
	if n := strings.Count(lb.String(), "device read failed, retrying"); n != 1 {
		t.Errorf("%d warning lines, want 1 (rate-limited):\n%s", n, lb.String())
	}
}

// A device failing on every read is retried with a growing, bounded pause,
// not in a spin.
func TestRetryDelay(t *testing.T) {
	if retryDelay(1) != 0 {
		t.Errorf("the first retry waits %v", retryDelay(1))
	}
	prev := time.Duration(0)
	for i := 1; i < 100; i++ {
		d := retryDelay(i)
		if d < prev || d > 250*time.Millisecond {
			t.Fatalf("retryDelay(%d) = %v after %v", i, d, prev)
		}
		prev = d
	}
	if prev != 250*time.Millisecond {
		t.Errorf("the back-off tops out at %v", prev)
	}
}

// A fatal read error stops the daemon: Run cancels with a *DeviceError
// naming the device and its error, and logs an error line.
func TestRunStopsOnFatal(t *testing.T) {
	d := newScriptDev(step{err: errGone})
	ctx, stop := context.WithCancelCause(context.Background())
	defer stop(nil)
	var lb logBuf
	NewStats("lan").Run(ctx, stop, d, func([]byte) {}, lb.logger())
	var de *DeviceError
	if !errors.As(context.Cause(ctx), &de) || de.Role != "lan" || de.Dev != "script0" || !errors.Is(de, errGone) {
		t.Fatalf("cause = %v, want a DeviceError for lan script0 wrapping %v", context.Cause(ctx), errGone)
	}
	if s := lb.String(); !strings.Contains(s, "level=ERROR") || !strings.Contains(s, "script0") || !strings.Contains(s, "device gone") {
		t.Errorf("log:\n%s", s)
	}
}

// A device closed under the daemon (removed) stops it too; one the daemon
// closed as it stops does not.
func TestRunClosed(t *testing.T) {
	d := newScriptDev()
	d.Close()
	ctx, stop := context.WithCancelCause(context.Background())
	defer stop(nil)
	NewStats("access").Run(ctx, stop, d, func([]byte) {}, nil)
	var de *DeviceError
	if !errors.As(context.Cause(ctx), &de) || de.Err != nil || !strings.Contains(de.Error(), "closed while in use") {
		t.Fatalf("cause = %v, want a DeviceError saying closed while in use", context.Cause(ctx))
	}

	ctx, stop = context.WithCancelCause(context.Background())
	stop(nil) // the daemon is stopping
	NewStats("access").Run(ctx, stop, d, func([]byte) {}, nil)
	if c := context.Cause(ctx); c != context.Canceled {
		t.Fatalf("cause = %v after a shutdown close, want context.Canceled", c)
	}
}

// Write errors are counted by kind and warned about once per interval;
// writes to a closing device only counted.
func TestLinkCountsWriteErrors(t *testing.T) {
	d := newScriptDev()
	st := NewStats("internet")
	var lb logBuf
	l := st.NewLink(d, lb.logger())
	d.writeErr = fmt.Errorf("x: %w", tun.ErrTooBig)
	l.Send([]byte{1})
	l.Send([]byte{2})
	d.writeErr = errGone
	l.Send([]byte{3})
	d.writeErr = tun.ErrClosed
	l.Send([]byte{4})
	m := st.Counters()
	if m["device-internet-write-errors"] != 4 || m["device-internet-write-errors-too-big"] != 2 ||
		m["device-internet-write-errors-other"] != 1 || m["device-internet-write-errors-closed"] != 1 {
		t.Errorf("Counters = %v", m)
	}
	if n := strings.Count(lb.String(), "device write failed"); n != 1 {
		t.Errorf("%d warning lines, want 1:\n%s", n, lb.String())
	}
}

func TestLogLimit(t *testing.T) {
	var l logLimit
	t0 := time.Unix(1000, 0)
	if ok, _ := l.allow(t0); !ok {
		t.Fatal("the first line is held back")
	}
	for i := 1; i <= 3; i++ {
		if ok, _ := l.allow(t0.Add(time.Duration(i) * time.Second)); ok {
			t.Fatalf("line %d within %v let through", i, logEvery)
		}
	}
	if ok, held := l.allow(t0.Add(logEvery)); !ok || held != 3 {
		t.Fatalf("after %v: allow = %v, %d held; want true, 3", logEvery, ok, held)
	}
}
