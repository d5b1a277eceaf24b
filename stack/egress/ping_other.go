//go:build !linux

package egress

import (
	"errors"
	"net"
)

// listenPing4 is only implemented on Linux: unprivileged ICMP sockets differ
// in their details elsewhere (macOS passes the IP header up).
func listenPing4(string) (net.PacketConn, error) {
	return nil, errors.New("egress: ping sockets are not supported on this platform")
}
