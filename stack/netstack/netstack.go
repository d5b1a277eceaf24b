// Package netstack builds the gVisor userspace stacks lw4o6 runs its own
// endpoints on (the B4's PCP client at 192.0.0.2, simulated hosts, the
// embedding API) and glues them to a packet path: packets the stack sends go
// to an Output function as whole IP datagrams; packets for the stack are
// handed to Inject.
package netstack

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// nicID is the only NIC of every stack built here.
const nicID tcpip.NICID = 1

// Options configure a Stack.
type Options struct {
	// Name labels log lines.
	Name string
	// MTU of the NIC: the IPv4 MTU of a LAN host is the tunnel MTU (outer
	// MTU - 40) so that its packets need no fragmentation in the softwire.
	MTU uint32
	// Addrs are the stack's own addresses (and on-link prefixes).
	Addrs []netip.Prefix
	// Output receives every packet the stack sends, as a whole IP datagram
	// that Output owns. It is called from gVisor's goroutines, possibly
	// with stack locks held: it must not block and must not call back into
	// this stack synchronously.
	Output func(pkt []byte)
	// Promiscuous makes the stack accept packets for any address and lets
	// endpoints bind and send from any address (gVisor's promiscuous mode
	// plus spoofing, GVISOR.md §1.3).
	Promiscuous bool
	// AllowLoopback accepts packets from and to 127.0.0.0/8 on the NIC,
	// which gVisor otherwise drops as martians. The laptop lab needs it:
	// there the "Internet" behind the AFTR's host egress is the host's own
	// loopback.
	AllowLoopback bool
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
}

// Stack is a gVisor stack with one NIC whose link is a function call each way.
type Stack struct {
	*stack.Stack
	ep  *linkEndpoint
	log *slog.Logger
}

// New builds and starts a stack.
func New(o Options) (*Stack, error) {
	if o.Output == nil {
		return nil, errors.New("netstack: Options.Output is nil")
	}
	if o.MTU == 0 {
		o.MTU = 1500
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocolWithOptions(ipv4.Options{AllowExternalLoopbackTraffic: o.AllowLoopback}), ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
		// ICMP errors from hosts are part of what the twins must relay
		// (RFC 5508); let the stack send them as fast as tests provoke them.
	})
	// SACK stays off (gVisor's default). With SACK on, gVisor's sender
	// wedges after a burst loss of a few hundred segments, which a UDP
	// underlay's socket buffer makes on a loaded host: after every RTO it
	// re-enters SACK recovery, resends one or two segments and waits for
	// the next RTO, so a 4 MiB download through the daemons crawled at a
	// few KB/s and looked stalled (review_test.go). With RACK off it wedges
	// less often, but still does. Without SACK, the RTO's go-back-N repairs
	// the same loss in a few round trips.
	sack := tcpip.TCPSACKEnabled(false)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return nil, fmt.Errorf("netstack: SACK: %v", err)
	}
	ep := &linkEndpoint{Endpoint: channel.New(0, o.MTU, ""), out: o.Output}
	if err := s.CreateNICWithOptions(nicID, ep, stack.NICOptions{Name: o.Name}); err != nil {
		return nil, fmt.Errorf("netstack: create NIC: %v", err)
	}
	st := &Stack{Stack: s, ep: ep, log: log}
	for _, p := range o.Addrs {
		if err := st.AddAddress(p); err != nil {
			s.Close()
			return nil, err
		}
	}
	if o.Promiscuous {
		s.SetPromiscuousMode(nicID, true)
		s.SetSpoofing(nicID, true)
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID},
	})
	return st, nil
}

// AddAddress adds one of the stack's own addresses.
func (s *Stack) AddAddress(p netip.Prefix) error {
	proto := ipv4.ProtocolNumber
	if p.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	pa := tcpip.ProtocolAddress{
		Protocol:          proto,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFromSlice(p.Addr().AsSlice()), PrefixLen: p.Bits()},
	}
	if err := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
		return fmt.Errorf("netstack: add address %v: %v", p, err)
	}
	return nil
}

// Inject hands one IP datagram to the stack as if it arrived on the NIC. The
// stack copies pkt; the caller keeps ownership.
func (s *Stack) Inject(pkt []byte) {
	if len(pkt) == 0 {
		return
	}
	var proto tcpip.NetworkProtocolNumber
	switch pkt[0] >> 4 {
	case 4:
		proto = ipv4.ProtocolNumber
	case 6:
		proto = ipv6.ProtocolNumber
	default:
		return
	}
	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
	s.ep.InjectInbound(proto, pb)
	pb.DecRef() // the stack took its own reference if it kept the packet
}

// Close shuts the stack down and waits for its goroutines.
func (s *Stack) Close() {
	s.Stack.Close()
	s.Stack.Wait()
}

// linkEndpoint is a channel.Endpoint whose outbound packets go straight to a
// function instead of a queue: one hop less, and no pump goroutine to leak.
type linkEndpoint struct {
	*channel.Endpoint
	out func([]byte)
}

// WritePackets flattens each packet and hands it to out. The stack keeps
// ownership of pkts.
func (e *linkEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		b := make([]byte, 0, pkt.Size())
		for _, s := range pkt.AsSlices() {
			b = append(b, s...)
		}
		e.out(b)
		n++
	}
	return n, nil
}
