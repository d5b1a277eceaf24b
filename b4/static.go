package b4

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/lw4o6/lw4o6/stack/portset"
)

// Static, embedded in Config, provisions the B4 with a fixed binding and no
// PCP: the address and port set that DHCPv6 OPTION_S46_CONT_LW gave (RFC
// 7596 §5.1, RFC 7598 §5.3), or an operator's. The provisioning system
// installed the same binding at the AFTR (RFC 7596 §4: the binding data
// MUST be the same in the lwB4, the lwAFTR and the provisioning server).
type Static struct {
	// StaticIPv4, when set, selects static provisioning.
	StaticIPv4 netip.Addr
	// StaticPorts is the port set, one range (RFC 7596 §5.1: a = 0).
	StaticPorts portset.Range
	// StaticSource names where the binding came from, for
	// Status.Provisioning: "dhcpv6" for an S46 binding; "" means "static".
	StaticSource string
}

func (s *Static) validate() error {
	if !s.StaticIPv4.IsValid() {
		if s.StaticPorts != (portset.Range{}) {
			return fmt.Errorf("%w: StaticPorts without StaticIPv4", ErrConfig)
		}
		return nil
	}
	// Validated as a PCP grant is (validate.go).
	if err := checkPublicIPv4(s.StaticIPv4); err != nil {
		return fmt.Errorf("%w: StaticIPv4: %w", ErrConfig, err)
	}
	if _, err := checkSet(s.StaticPorts.First, s.StaticPorts.Size, 65535); err != nil {
		return fmt.Errorf("%w: StaticPorts: %w", ErrConfig, err)
	}
	return nil
}

// runStatic installs the static binding and holds it until ctx ends: no
// PCP, so no renewal and no re-provisioning; an ICMPv6 1/5 is only
// counted, as the AFTR alone checks the binding.
func (b *B4) runStatic(ctx context.Context) error {
	ip, set := b.cfg.StaticIPv4.Unmap(), b.cfg.StaticPorts
	src := b.cfg.StaticSource
	if src == "" {
		src = "static"
	}
	if err := b.nat.SetExternal(ip, set); err != nil {
		return fmt.Errorf("b4: NAT refused the static set: %w", err)
	}
	b.provisioned.Store(true)
	b.setStatus(func(s *Status) {
		s.Provisioned, s.Provisioning = true, src
		s.PublicIPv4, s.Ports = ip, set
		s.Provisionings++
	})
	b.log.Info("provisioned statically", "from", src, "ipv4", ip, "ports", set)
	<-ctx.Done() // Run sweeps the NAT meanwhile
	return nil
}
