package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
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
// step, blocking until the test gives one or the device is closed. It
// counts what the B4 writes (its PCP requests).
type fakeDev struct {
	steps  chan step
	done   chan struct{}
	once   sync.Once
	writes atomic.Int64
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
func (d *fakeDev) Write(bufs [][]byte, off int) (int, error) {
	d.writes.Add(int64(len(bufs)))
	return len(bufs), nil
}
func (d *fakeDev) BatchSize() int { return 1 }
func (d *fakeDev) MTU() int       { return 1500 }
func (d *fakeDev) Name() string   { return "fake0" }
func (d *fakeDev) Close() error   { d.once.Do(func() { close(d.done) }); return nil }

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }
func (b *syncBuf) String() string              { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// The B4's access device failing for good stops the daemon with exit 1 and
// a line naming the device and the error; a per-packet error before it is
// counted, the pump goes on, and the counters at exit show both.
func TestAccessDeviceFailureStopsB4(t *testing.T) {
	dev := newFakeDev()
	old := openAccess
	openAccess = func(*options, netip.Addr, netip.Addr, *slog.Logger) (tun.Device, error) { return dev, nil }
	t.Cleanup(func() { openAccess = old })

	var stdout, stderr syncBuf
	code := make(chan int, 1)
	go func() {
		code <- run([]string{"--aftr", "2001:db8::1", "--ipv6", "2001:db8:b4::1", "--underlay", "udp",
			"--underlay-peer", "127.0.0.1:9", "--socks5", "127.0.0.1:0", "--nonce-file", "none", "--provision", "pcp"}, &stdout, &stderr)
	}()
	// Fail once the B4 runs: it has sent its first PCP request.
	deadline := time.Now().Add(60 * time.Second)
	for dev.writes.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the B4 never sent on its access device; stderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	dev.steps <- step{err: fmt.Errorf("fake0: %w", tun.ErrMalformed)}
	dev.steps <- step{err: errors.New("device gone")}
	var c int
	select {
	case c = <-code:
	case <-time.After(60 * time.Second):
		t.Fatalf("the B4 is still running after its device failed; stderr:\n%s", stderr.String())
	}
	out := stderr.String()
	if c != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", c, out)
	}
	if !strings.Contains(out, "lw4o6-b4: access device fake0: device gone") {
		t.Errorf("no error line naming the device and the error; stderr:\n%s", out)
	}
	for _, want := range []string{"device-access-read-errors-malformed=1", "device-access-read-errors-other=1"} {
		if !strings.Contains(out, want) {
			t.Errorf("counters at exit lack %s; stderr:\n%s", want, out)
		}
	}
}
