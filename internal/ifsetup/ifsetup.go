// Package ifsetup brings a TUN interface up with an IPv4 address and MTU,
// and optionally a default route through it: netlink on Linux, the system
// tools (ifconfig, route, netsh) on macOS and Windows.
package ifsetup

import (
	"errors"
	"net/netip"
)

// Config says how to set an interface up.
type Config struct {
	Name         string       // interface name
	Addr         netip.Prefix // IPv4 address and prefix of the interface (the B4's LAN gateway)
	MTU          int
	DefaultRoute bool // route 0.0.0.0/0 through the interface
	// Routes are further IPv4 prefixes routed through the interface
	// (an AFTR's pools, so that the Internet side reaches its B4s).
	Routes []netip.Prefix
}

// ErrUnsupported is returned on platforms without an implementation.
var ErrUnsupported = errors.New("ifsetup: not supported on this platform")

// Up configures the interface; see the platform files.
func Up(c Config) error { return up(c) }
