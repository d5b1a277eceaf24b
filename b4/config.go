package b4

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/lw4o6/lw4o6/b4/nat"
)

// Config configures a B4. Start from DefaultConfig.
type Config struct {
	// Addr is the B4's IPv6 address: the softwire source, and the
	// identity the AFTR binds the port set to.
	Addr netip.Addr
	// AFTR is the AFTR's IPv6 address (from configuration, DNS or DHCPv6
	// OPTION_AFTR_NAME): the only source the B4 accepts softwire packets
	// and ICMPv6 errors from (RFC 7596 §5.1).
	AFTR netip.Addr
	// Gateway is the B4's own address on the LAN: the source of the
	// ICMPv4 errors it sends to LAN hosts.
	Gateway netip.Addr
	// PortSetSize is the PORT_SET size asked for: 65535 means "as many as
	// you will give me" (RFC 7753 §4.1).
	PortSetSize uint16
	// Lifetime is the binding lifetime asked for.
	Lifetime time.Duration
	// HopLimit is the outer hop limit of the softwire (RFC 2473 §6.3).
	HopLimit uint8
	// TunnelMTU is the largest IPv4 packet carried unfragmented (the
	// access MTU minus 40); the B4's own stack uses it.
	TunnelMTU uint32
	// ReprovisionOnICMP makes an ICMPv6 1/5 from the AFTR about the B4's
	// own packet drop the port set and provision again (RFC 7596 §5.1:
	// MAY, the policy SHOULD be configurable).
	ReprovisionOnICMP bool
	// Nonce is the PCP mapping nonce. Keep it across restarts so renewals
	// are not refused (PROTOCOL.md §8 item 6); nil picks a random one.
	Nonce *[12]byte
	// NAT configures the NAPT44.
	NAT nat.Config
	// Failover, shutdown and static provisioning: see failover.go.
	Failover
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the B4's log; nil discards it.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults; Addr, AFTR and Gateway must be set.
func DefaultConfig() Config {
	return Config{
		PortSetSize:       65535,
		Lifetime:          2 * time.Hour,
		HopLimit:          64,
		TunnelMTU:         1460,
		ReprovisionOnICMP: true,
	}
}

// ErrConfig wraps every configuration error.
var ErrConfig = errors.New("b4: bad configuration")

func (c *Config) validate() error {
	for _, f := range []struct {
		name string
		a    netip.Addr
	}{{"Addr", c.Addr}, {"AFTR", c.AFTR}} {
		if !f.a.Is6() || f.a.Is4In6() || f.a.IsUnspecified() || f.a.IsMulticast() {
			return fmt.Errorf("%w: %s %v is not a unicast IPv6 address", ErrConfig, f.name, f.a)
		}
	}
	if !c.Gateway.Is4() {
		return fmt.Errorf("%w: Gateway %v is not IPv4", ErrConfig, c.Gateway)
	}
	if c.PortSetSize == 0 {
		return fmt.Errorf("%w: PortSetSize 0 (RFC 7753 §4: MUST NOT be 0)", ErrConfig)
	}
	if c.Lifetime < time.Second {
		return fmt.Errorf("%w: Lifetime %v", ErrConfig, c.Lifetime)
	}
	if c.HopLimit == 0 {
		return fmt.Errorf("%w: HopLimit 0", ErrConfig)
	}
	if c.TunnelMTU < 576 {
		return fmt.Errorf("%w: TunnelMTU %d below 576", ErrConfig, c.TunnelMTU)
	}
	return c.Failover.validate(c.PortSetSize)
}
