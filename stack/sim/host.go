package sim

import (
	"log/slog"
	"net/netip"

	"github.com/lw4o6/lw4o6/stack/netstack"
)

// Host is a gVisor stack attached to a Network: real TCP, UDP and ICMP.
type Host struct {
	*netstack.Stack
	Port *Port
}

// NewHost attaches a host with addresses addrs (each routed to it as a
// host route) and the given MTU. Its stack sends everything to the network.
func NewHost(n *Network, name string, mtu uint32, log *slog.Logger, addrs ...netip.Prefix) (*Host, error) {
	h := &Host{}
	var routes []netip.Prefix
	for _, a := range addrs {
		routes = append(routes, netip.PrefixFrom(a.Addr(), a.Addr().BitLen()))
	}
	// The port must exist before the stack can send, and the stack before
	// the port can deliver: the port's goroutine waits for ready.
	ready := make(chan struct{})
	p, err := n.Attach(name, func(b []byte) {
		<-ready
		if h.Stack != nil {
			h.Inject(b)
		}
	}, routes...)
	if err != nil {
		return nil, err
	}
	defer close(ready)
	s, err := netstack.New(netstack.Options{Name: name, MTU: mtu, Addrs: addrs, Output: p.Send, Logger: log})
	if err != nil {
		n.RemoveRoutes(p)
		p.close()
		return nil, err
	}
	h.Stack, h.Port = s, p
	return h, nil
}
