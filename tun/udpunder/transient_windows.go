package udpunder

import (
	"errors"

	"golang.org/x/sys/windows"
)

// transient reports a receive error that says nothing about this socket's
// health: Windows reports an ICMP port unreachable, provoked by an earlier
// send, as WSAECONNRESET on the next receive of an unconnected UDP socket.
func transient(err error) bool {
	return errors.Is(err, windows.WSAECONNRESET) || errors.Is(err, windows.WSAECONNREFUSED)
}
