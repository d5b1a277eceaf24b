package rawip6

import (
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// joinGroups makes the data socket a member of the configured multicast
// groups (IPV6_JOIN_GROUP) on the interface of the local address: a raw
// socket bound to a unicast address receives multicast only for groups its
// interface has joined. ff02::1 every interface has joined already.
func (d *Device) joinGroups() error {
	if len(d.cfg.groups) == 0 {
		return nil
	}
	ifindex := d.scope
	if ifindex == 0 {
		ifindex = interfaceOf(d.local)
	}
	for _, g := range d.cfg.groups {
		mreq := &unix.IPv6Mreq{Multiaddr: g.As16(), Interface: ifindex}
		var serr error
		if err := d.data.rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptIPv6Mreq(int(fd), unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, mreq)
		}); err != nil || serr != nil {
			if err == nil {
				err = serr
			}
			return fmt.Errorf("rawip6: join %v on interface %d: %w", g, ifindex, err)
		}
	}
	return nil
}

// interfaceOf is the index of the interface holding local; 0 (the kernel
// picks by route) when none does or local is unspecified.
func interfaceOf(local netip.Addr) uint32 {
	ifs, err := net.Interfaces()
	if err != nil || local.IsUnspecified() {
		return 0
	}
	for _, ifi := range ifs {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == local.WithZone("") {
					return uint32(ifi.Index)
				}
			}
		}
	}
	return 0
}
