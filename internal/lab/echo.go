package lab

import (
	"net/netip"
	"sync/atomic"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/sim"
)

// EchoAddr is the Internet address of the raw UDP echo responder.
var EchoAddr = netip.MustParseAddr("198.51.100.20")

// Echo is a cheap Internet-side UDP echo (port UDPPort) without a network
// stack: each datagram to it is sent back with addresses and ports swapped,
// from its own goroutine (the sim port's). The failover scenario's probes
// from a thousand B4s use it instead of a gVisor host.
type Echo struct {
	port *sim.Port
	// Echoed counts datagrams sent back; Dropped what was not a UDP
	// datagram to the echo port.
	Echoed, Dropped atomic.Uint64
}

// NewEcho attaches the responder at addr on n.
func NewEcho(n *sim.Network, addr netip.Addr) (*Echo, error) {
	e := &Echo{}
	ready := make(chan struct{})
	p, err := n.Attach("echo", func(b []byte) { <-ready; e.recv(b) }, netip.PrefixFrom(addr, 32))
	if err != nil {
		return nil, err
	}
	e.port = p
	close(ready)
	return e, nil
}

func (e *Echo) recv(b []byte) {
	ip, err := packet.ParseIPv4(b)
	var u packet.UDP
	if err != nil || packet.ParseUDP4(ip, &u) != nil || u.DstPort != UDPPort {
		e.Dropped.Add(1)
		return
	}
	e.port.Send(packet.AppendUDP4(nil, 0, ip.Dst(), ip.Src(), u.DstPort, u.SrcPort, 64, u.Data))
	e.Echoed.Add(1)
}
