//go:build !windows

package main

import (
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/lw4o6/lw4o6/b4"
)

// statusOnSignal prints the B4's status (writeStatus) to w on SIGUSR1:
// `kill -USR1 $(pidof lw4o6-b4)`.
func statusOnSignal(bb *b4.B4, w io.Writer) (stop func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-c:
				writeStatus(w, bb.Status())
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(c); close(done) }
}
