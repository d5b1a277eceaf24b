package main

import (
	"io"

	"github.com/lw4o6/lw4o6/aftr"
)

// dumpCountersOnSignal: Windows has no SIGUSR1; counters are logged at exit.
func dumpCountersOnSignal(*aftr.AFTR, io.Writer) (stop func()) { return func() {} }
