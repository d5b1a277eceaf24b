//go:build !windows

package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"syscall"
)

// dumpCountersOnSignal prints the counters ("name value" lines, sorted:
// the B4's and its devices' error counters) to w on SIGUSR1, as the AFTR
// does: `kill -USR1 $(pidof lw4o6-b4)`.
func dumpCountersOnSignal(counters func() map[string]uint64, w io.Writer) (stop func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-c:
				m := counters()
				for _, k := range slices.Sorted(maps.Keys(m)) {
					fmt.Fprintf(w, "%s %d\n", k, m[k])
				}
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(c); close(done) }
}
