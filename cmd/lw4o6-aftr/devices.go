package main

import (
	"fmt"
	"log/slog"

	"github.com/lw4o6/lw4o6/aftr"
	"github.com/lw4o6/lw4o6/tun"
	"github.com/lw4o6/lw4o6/tun/rawip6"
	"github.com/lw4o6/lw4o6/tun/udpunder"
	"github.com/lw4o6/lw4o6/tun/wgtun"
)

// openAccess opens the access side toward the B4s; tests give serve a
// device of their own through it.
var openAccess = openAccessDevice

func openAccessDevice(o *options, log *slog.Logger) (tun.Device, error) {
	switch o.underlay {
	case "udp":
		// The AFTR learns each B4's UDP endpoint from its datagrams, and
		// an endpoint that won the B4's PCP binding moves only when a
		// fresh PCP answer grants it elsewhere.
		d, err := udpunder.NewServer(o.listen, udpunder.WithMTU(o.mtu),
			udpunder.WithBinding(aftr.UnderlayClaim, aftr.UnderlayAnswer))
		if err != nil {
			return nil, fmt.Errorf("--underlay udp: %w", err)
		}
		return d, nil
	default:
		d, err := rawip6.Open(o.ipv6[0], rawip6.WithMTU(o.mtu))
		if err != nil {
			return nil, fmt.Errorf("--underlay raw on %v (needs CAP_NET_RAW): %w", o.ipv6[0], err)
		}
		return d, nil
	}
}

// openTUN opens the Internet-side TUN.
func openTUN(name string, mtu int) (tun.Device, error) {
	d, err := wgtun.Open(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("--ipv4-side tun:%s (needs CAP_NET_ADMIN): %w", name, err)
	}
	return d, nil
}
