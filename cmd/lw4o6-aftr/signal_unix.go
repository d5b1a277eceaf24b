//go:build !windows

package main

import (
	"io"
	"os"
	"os/signal"
	"syscall"
)

// dumpCountersOnSignal prints every non-zero counter ("name value" lines,
// Snabb's names, and the devices' error counters) to w on SIGUSR1: `kill -USR1 $(pidof lw4o6-aftr)`.
func dumpCountersOnSignal(a counterSource, w io.Writer) (stop func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-c:
				writeCounters(w, a.Counters())
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(c); close(done) }
}

// reloadOnSignal calls reload on each SIGHUP (`kill -HUP`, `lw4o6-aftr
// reload`, systemd's ExecReload), one at a time, until stop. SIGHUP is
// caught even without a file to reload: its default action would end the
// daemon.
func reloadOnSignal(reload func()) (stop func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGHUP)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-c:
				reload()
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(c); close(done); <-finished }
}
