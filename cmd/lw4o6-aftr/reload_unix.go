//go:build !windows

package main

import (
	"fmt"
	"syscall"
)

// signalReload sends SIGHUP to the daemon pid.
func signalReload(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("SIGHUP to %d: %w", pid, err)
	}
	return nil
}
