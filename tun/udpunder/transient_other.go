//go:build !windows

package udpunder

import (
	"errors"
	"syscall"
)

// transient reports a receive error that says nothing about this socket's
// health: an ICMP error that a previous send provoked.
func transient(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}
