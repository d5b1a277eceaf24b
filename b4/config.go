package b4

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/lw4o6/lw4o6/b4/lanpcp"
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
	// MaxSets is the most port sets the B4 holds: above 1 it asks the
	// AFTR for more when the NAT fills (docs/port-sets.md, pool.go), up to
	// nat.MaxSets; 1 keeps the one set.
	MaxSets int
	// GrowAt is the high-water mark, the share (0, 1] of the ports held
	// that mappings may use before the B4 asks for one more set (it asks
	// too when a port allocation fails).
	GrowAt float64
	// ShrinkAfter is how long an added set stays unused before the B4
	// gives it back (MAP lifetime 0).
	ShrinkAfter time.Duration
	// NAT configures the NAPT44.
	NAT nat.Config
	// LANPCP configures the LAN's PCP and NAT-PMP server (b4/lanpcp) on
	// Gateway:5351; DisableLANPCP turns it off.
	LANPCP        lanpcp.Config
	DisableLANPCP bool
	// Static provisioning (no PCP): see static.go.
	Static
	// Failover and shutdown: see failover.go.
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
		MaxSets:           4,
		GrowAt:            0.8,
		ShrinkAfter:       3 * time.Minute,
		// Per-LAN-host quotas (RFC 6888 REQ-4, REQ-5; nat/quota.go).
		NAT: nat.Config{HostPortShare: nat.DefaultHostPortShare, HostSessions: nat.DefaultHostSessions},
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
	if c.MaxSets == 0 {
		c.MaxSets = 1 // a Config not from DefaultConfig: one set, as before
	}
	if c.MaxSets < 1 || c.MaxSets > nat.MaxSets {
		return fmt.Errorf("%w: MaxSets %d is not in [1, %d]", ErrConfig, c.MaxSets, nat.MaxSets)
	}
	if c.MaxSets > 1 && (!(c.GrowAt > 0 && c.GrowAt <= 1) || c.ShrinkAfter <= 0) {
		return fmt.Errorf("%w: GrowAt %v (want (0, 1]) or ShrinkAfter %v (want > 0)", ErrConfig, c.GrowAt, c.ShrinkAfter)
	}
	if c.TunnelMTU < 576 {
		return fmt.Errorf("%w: TunnelMTU %d below 576", ErrConfig, c.TunnelMTU)
	}
	if err := c.NAT.ValidateQuotas(); err != nil {
		return fmt.Errorf("%w: NAT: %v", ErrConfig, err)
	}
	if err := c.Failover.validate(); err != nil {
		return err
	}
	return c.Static.validate()
}
