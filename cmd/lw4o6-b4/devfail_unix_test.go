//go:build !windows

package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/tun"
)

// SIGUSR1 prints the B4's counters with its devices' error counters while
// it runs on after a per-packet error.
func TestDeviceErrorsOnSIGUSR1(t *testing.T) {
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
	deadline := time.Now().Add(60 * time.Second)
	// The handler is in place once the B4 says it starts; it sends its
	// first PCP request after that.
	for !strings.Contains(stderr.String(), "B4 starting") || dev.writes.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the B4 never started; stderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	dev.steps <- step{err: fmt.Errorf("fake0: %w", tun.ErrTooBig)}
	for !strings.Contains(stdout.String(), "device-access-read-errors-too-big 1\n") {
		if time.Now().After(deadline) {
			t.Fatalf("SIGUSR1 output lacks the device's error counter; stdout:\n%s", stdout.String())
		}
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case c := <-code:
		t.Fatalf("the B4 stopped (exit %d) on a per-packet error; stderr:\n%s", c, stderr.String())
	default:
	}
	dev.steps <- step{err: fmt.Errorf("device gone")}
	select {
	case c := <-code:
		if c != 1 {
			t.Fatalf("exit %d, want 1", c)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the B4 is still running after its device failed; stderr:\n%s", stderr.String())
	}
}
