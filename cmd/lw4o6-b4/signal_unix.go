//go:build !windows

package main

import (
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/lw4o6/lw4o6/b4"
)

// statusOnSignal prints the B4's status (writeStatus: provisioning, pool,
// sets, explicit mappings, the B4's and its devices' counters) to w on
// SIGUSR1: `kill -USR1 $(pidof lw4o6-b4)`.
func statusOnSignal(status func() b4.Status, w io.Writer) (stop func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-c:
				writeStatus(w, status())
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(c); close(done) }
}
