package aftr

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// Config configures an AFTR. Start from DefaultConfig: its zero value turns
// every optional behaviour off.
type Config struct {
	// Addr is the AFTR's IPv6 address: the softwire endpoint the B4s
	// tunnel to (the BR address) and the source of what it sends them.
	Addr netip.Addr
	// IPv4Addr is the AFTR's own public IPv4 address, the source of the
	// ICMPv4 errors it sends to the Internet. Unset: no ICMPv4 errors.
	IPv4Addr netip.Addr
	// Pools are the IPv4 prefixes the PCP server hands out.
	Pools []netip.Prefix
	// PortsPerB4 is the size of each B4's port set: a power of two.
	PortsPerB4 int
	// LifetimeMin and LifetimeMax bound the binding lifetimes granted
	// (RFC 6887 §15: 120 s and 24 h).
	LifetimeMin, LifetimeMax time.Duration
	// HopLimit is the outer hop limit of encapsulated packets (RFC 2473
	// §6.3: the tunnel's own, 64 by default).
	HopLimit uint8
	// Hairpinning lets B4s reach each other through the AFTR
	// (RFC 7596 §6.2: MUST be supported, the policy configurable).
	Hairpinning bool
	// ICMPv6OnBindingFailure sends ICMPv6 type 1 code 5 to a B4 whose
	// packet matched no binding (RFC 7596 §6.2 MAY, configurable).
	ICMPv6OnBindingFailure bool
	// ICMPv4OnNoBinding sends ICMPv4 type 3 code 1 for Internet packets
	// that match no binding (RFC 7596 §6.2 MAY, configurable). Needs
	// IPv4Addr.
	ICMPv4OnNoBinding bool
	// ICMPRate is the most ICMP errors sent per second (RFC 7596 §9 and
	// RFC 4443 §2.4(f): MUST be rate-limited).
	ICMPRate int
	// Provisioners are the IPv6 addresses of provisioning systems allowed
	// to use PCP THIRD_PARTY to manage a named B4's binding
	// (PROTOCOL.md §8 item 4).
	Provisioners []netip.Addr
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the AFTR's log; nil discards it.
	Logger *slog.Logger
}

// DefaultConfig returns the RFC-sound defaults. Addr and Pools must still be set.
func DefaultConfig() Config {
	return Config{
		PortsPerB4:             2048,
		LifetimeMin:            120 * time.Second,
		LifetimeMax:            24 * time.Hour,
		HopLimit:               64,
		Hairpinning:            true,
		ICMPv6OnBindingFailure: true,
		ICMPRate:               100,
	}
}

// ErrConfig wraps every configuration error.
var ErrConfig = errors.New("aftr: bad configuration")

func (c *Config) validate() error {
	if !c.Addr.Is6() || c.Addr.Is4In6() || c.Addr.IsUnspecified() || c.Addr.IsMulticast() {
		return fmt.Errorf("%w: Addr %v is not a unicast IPv6 address", ErrConfig, c.Addr)
	}
	if len(c.Pools) == 0 {
		return fmt.Errorf("%w: no IPv4 pool", ErrConfig)
	}
	for _, p := range c.Pools {
		if !p.IsValid() || !p.Addr().Is4() {
			return fmt.Errorf("%w: pool %v is not an IPv4 prefix", ErrConfig, p)
		}
	}
	if c.IPv4Addr.IsValid() && !c.IPv4Addr.Is4() {
		return fmt.Errorf("%w: IPv4Addr %v is not IPv4", ErrConfig, c.IPv4Addr)
	}
	if c.HopLimit == 0 {
		return fmt.Errorf("%w: HopLimit 0", ErrConfig)
	}
	if c.LifetimeMin <= 0 || c.LifetimeMax < c.LifetimeMin {
		return fmt.Errorf("%w: lifetimes min %v max %v", ErrConfig, c.LifetimeMin, c.LifetimeMax)
	}
	return nil
}
