package main

import (
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/lw4o6/lw4o6/tun"
	"github.com/lw4o6/lw4o6/tun/rawip6"
	"github.com/lw4o6/lw4o6/tun/udpunder"
	"github.com/lw4o6/lw4o6/tun/watertun"
	"github.com/lw4o6/lw4o6/tun/wgtun"
)

// openAccess opens the access side: IPv4-in-IPv6 to and from the AFTR;
// tests give serve a device of their own through it.
var openAccess = openAccessDevice

func openAccessDevice(o *options, src, aftr netip.Addr, log *slog.Logger) (tun.Device, error) {
	switch o.underlay {
	case "udp":
		local := o.listen
		if local == "" {
			local = ":0"
		}
		d, err := udpunder.NewClient(local, o.peer, udpunder.WithMTU(o.mtu))
		if err != nil {
			return nil, fmt.Errorf("--underlay udp: %w", err)
		}
		return d, nil
	default:
		// The raw socket also receives the AFTR's ICMPv6 errors (1/5).
		opts := []rawip6.Option{rawip6.WithICMPv6(), rawip6.WithMTU(o.mtu)}
		if g := o.failover.announceGroup; g.IsValid() {
			opts = append(opts, rawip6.WithGroup(g))
		}
		d, err := rawip6.Open(src, opts...)
		if err != nil {
			return nil, fmt.Errorf("--underlay raw on %v (needs CAP_NET_RAW): %w", src, err)
		}
		return d, nil
	}
}

// openTUN opens (creating if needed) the LAN-side TUN.
func openTUN(o *options) (tun.Device, error) {
	mtu := o.mtu - 40
	var d tun.Device
	var err error
	switch o.tunDriver {
	case "water":
		d, err = watertun.Open(o.tun, mtu)
	default:
		d, err = wgtun.Open(o.tun, mtu)
	}
	if err != nil {
		return nil, fmt.Errorf("--tun %s (needs CAP_NET_ADMIN): %w", o.tun, err)
	}
	return d, nil
}
