//go:build !windows

package main

import (
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/lw4o6/lw4o6/aftr"
)

// dumpCountersOnSignal prints every non-zero counter ("name value" lines,
// Snabb's names) to w on SIGUSR1: `kill -USR1 $(pidof lw4o6-aftr)`.
func dumpCountersOnSignal(a *aftr.AFTR, w io.Writer) (stop func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-c:
				aftr.WriteCounters(w, a)
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(c); close(done) }
}
