//go:build !windows

package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/tun"
)

// SIGUSR1's counters show the device errors while the daemon runs on.
func TestDeviceErrorsOnSIGUSR1(t *testing.T) {
	dev := newFakeDev()
	withAccess(t, dev)
	dev.steps <- step{err: fmt.Errorf("fake0: %w", tun.ErrMalformed)}
	var stdout, stderr syncBuf
	code := runDaemon(&stdout, &stderr)
	deadline := time.Now().Add(60 * time.Second)
	// The SIGUSR1 handler is in place once the daemon says it serves.
	for !strings.Contains(stdout.String(), "serving PCP") {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon never served; stderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for !strings.Contains(stdout.String(), "device-access-read-errors-malformed 1\n") {
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
		t.Fatalf("the daemon stopped (exit %d) on a per-packet error; stderr:\n%s", c, stderr.String())
	default:
	}
	dev.steps <- step{err: errGone}
	if c := waitExit(t, code, &stderr); c != 1 {
		t.Fatalf("exit %d, want 1", c)
	}
}
