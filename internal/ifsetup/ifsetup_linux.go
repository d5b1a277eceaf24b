package ifsetup

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

func up(c Config) error {
	link, err := netlink.LinkByName(c.Name)
	if err != nil {
		return fmt.Errorf("ifsetup: %s: %w", c.Name, err)
	}
	if c.MTU > 0 {
		if err := netlink.LinkSetMTU(link, c.MTU); err != nil {
			return fmt.Errorf("ifsetup: %s: set MTU %d: %w", c.Name, c.MTU, err)
		}
	}
	if c.Addr.IsValid() {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: c.Addr.Addr().AsSlice(), Mask: net.CIDRMask(c.Addr.Bits(), c.Addr.Addr().BitLen())}}
		if err := netlink.AddrReplace(link, a); err != nil {
			return fmt.Errorf("ifsetup: %s: address %v: %w", c.Name, c.Addr, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("ifsetup: %s: up: %w", c.Name, err)
	}
	routes := c.Routes
	if c.DefaultRoute {
		routes = append(routes, netip.PrefixFrom(netip.IPv4Unspecified(), 0))
	}
	for _, p := range routes {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("ifsetup: %s: route %v: %w", c.Name, p, err)
		}
	}
	return nil
}
