package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/tun"
)

// step is one Read's outcome on a fakeDev: a packet or an error.
type step struct {
	pkt []byte
	err error
}

// fakeDev is an access device the test scripts: each Read takes the next
// step, blocking until the test gives one or the device is closed.
type fakeDev struct {
	steps chan step
	done  chan struct{}
	once  sync.Once
}

func newFakeDev() *fakeDev { return &fakeDev{steps: make(chan step, 16), done: make(chan struct{})} }

func (d *fakeDev) Read(bufs [][]byte, sizes []int, off int) (int, error) {
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
func (d *fakeDev) Write(bufs [][]byte, off int) (int, error) { return len(bufs), nil }
func (d *fakeDev) BatchSize() int                            { return 1 }
func (d *fakeDev) MTU() int                                  { return 1500 }
func (d *fakeDev) Name() string                              { return "fake0" }
func (d *fakeDev) Close() error                              { d.once.Do(func() { close(d.done) }); return nil }

// syncBuf is an output safe to read while the daemon writes it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }
func (b *syncBuf) String() string              { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// withAccess makes serve use dev as its access device.
func withAccess(t *testing.T, dev *fakeDev) {
	old := openAccess
	openAccess = func(*options, *slog.Logger) (tun.Device, error) { return dev, nil }
	t.Cleanup(func() { openAccess = old })
}

var daemonArgs = []string{"--ipv6", "2001:db8::1", "--underlay", "udp", "--underlay-listen", "127.0.0.1:0",
	"--pool", "192.0.2.0/30", "--state-dir", ""}

// runDaemon runs the daemon's main in the background; its exit code
// arrives on the channel.
func runDaemon(stdout, stderr io.Writer) <-chan int {
	code := make(chan int, 1)
	go func() { code <- run(daemonArgs, stdout, stderr) }()
	return code
}

func waitExit(t *testing.T, code <-chan int, stderr *syncBuf) int {
	t.Helper()
	select {
	case c := <-code:
		return c
	case <-time.After(60 * time.Second):
		t.Fatalf("the daemon is still running after its device failed; stderr:\n%s", stderr)
		return 0
	}
}

var errGone = errors.New("device gone")

// An access device that fails for good stops the daemon with exit 1 and a
// line naming the device and the error; a per-packet error before it was
// counted and the pump went on to the next read; the counters at exit show
// both.
func TestAccessDeviceFailureStopsDaemon(t *testing.T) {
	dev := newFakeDev()
	withAccess(t, dev)
	dev.steps <- step{err: fmt.Errorf("fake0: %w", tun.ErrTooBig)}
	dev.steps <- step{err: errGone}
	var stdout, stderr syncBuf
	c := waitExit(t, runDaemon(&stdout, &stderr), &stderr)
	out := stderr.String()
	if c != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", c, out)
	}
	if !strings.Contains(out, "lw4o6-aftr: access device fake0: device gone") {
		t.Errorf("no error line naming the device and the error; stderr:\n%s", out)
	}
	for _, want := range []string{"device-access-read-errors-too-big=1", "device-access-read-errors-other=1", "device-access-read-errors=2"} {
		if !strings.Contains(out, want) {
			t.Errorf("counters at exit lack %s; stderr:\n%s", want, out)
		}
	}
}

// An access device closed under the daemon (a removed interface) stops it
// too.
func TestAccessDeviceClosedStopsDaemon(t *testing.T) {
	dev := newFakeDev()
	withAccess(t, dev)
	dev.Close()
	var stdout, stderr syncBuf
	c := waitExit(t, runDaemon(&stdout, &stderr), &stderr)
	if out := stderr.String(); c != 1 || !strings.Contains(out, "access device fake0: closed while in use") {
		t.Fatalf("exit %d, want 1 with a line saying the device closed; stderr:\n%s", c, out)
	}
}
