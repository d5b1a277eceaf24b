package main

import "io"

// dumpCountersOnSignal: Windows has no SIGUSR1; counters are logged at exit.
func dumpCountersOnSignal(counterSource, io.Writer) (stop func()) { return func() {} }

// reloadOnSignal: Windows has no SIGHUP; nothing reloads.
func reloadOnSignal(func()) (stop func()) { return func() {} }
