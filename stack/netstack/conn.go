package netstack

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

func full(ap netip.AddrPort) (tcpip.FullAddress, tcpip.NetworkProtocolNumber) {
	a := ap.Addr().Unmap()
	proto := ipv4.ProtocolNumber
	if a.Is6() {
		proto = ipv6.ProtocolNumber
	}
	fa := tcpip.FullAddress{NIC: nicID, Port: ap.Port()}
	if a.IsValid() && !a.IsUnspecified() {
		fa.Addr = tcpip.AddrFromSlice(a.AsSlice())
	}
	return fa, proto
}

// DialTCP opens a TCP connection to dst.
func (s *Stack) DialTCP(ctx context.Context, dst netip.AddrPort) (*gonet.TCPConn, error) {
	fa, proto := full(dst)
	return gonet.DialContextTCP(ctx, s.Stack, fa, proto)
}

// ListenTCP listens on addr (port 0 is not allowed by gVisor's listener:
// pick one).
func (s *Stack) ListenTCP(addr netip.AddrPort) (*gonet.TCPListener, error) {
	fa, proto := full(addr)
	return gonet.ListenTCP(s.Stack, fa, proto)
}

// DialUDP opens a UDP socket bound to laddr (zero for any) and connected to
// raddr (zero for unconnected).
func (s *Stack) DialUDP(laddr, raddr netip.AddrPort) (*gonet.UDPConn, error) {
	proto := ipv4.ProtocolNumber
	if (laddr.IsValid() && laddr.Addr().Unmap().Is6()) || (raddr.IsValid() && raddr.Addr().Unmap().Is6()) {
		proto = ipv6.ProtocolNumber
	}
	var wq waiter.Queue
	ep, terr := s.NewEndpoint(udp.ProtocolNumber, proto, &wq)
	if terr != nil {
		return nil, fmt.Errorf("netstack: udp endpoint: %v", terr)
	}
	// gVisor's default path-MTU strategy sends UDP with DF and IP ID 0 yet
	// fragments large datagrams itself: every fragmented datagram would then
	// carry ID 0 and two in flight would be reassembled into garbage.
	ep.SetSockOptInt(tcpip.MTUDiscoverOption, int(tcpip.PMTUDiscoveryDont))
	if laddr.IsValid() {
		fa, _ := full(laddr)
		if terr := ep.Bind(fa); terr != nil {
			ep.Close()
			return nil, fmt.Errorf("netstack: udp bind %v: %v", laddr, terr)
		}
	}
	if raddr.IsValid() {
		fa, _ := full(raddr)
		if terr := ep.Connect(fa); terr != nil {
			ep.Close()
			return nil, fmt.Errorf("netstack: udp connect %v: %v", raddr, terr)
		}
	}
	return gonet.NewUDPConn(&wq, ep), nil
}

// ErrPingTimeout is returned when no echo reply arrives in time.
var ErrPingTimeout = errors.New("netstack: ping timed out")

// Ping sends one ICMP echo request to dst and waits for the reply, returning
// the round-trip time. The stack chooses the identifier.
func (s *Stack) Ping(ctx context.Context, dst netip.Addr, seq uint16, payload []byte) (time.Duration, error) {
	dst = dst.Unmap()
	var wq waiter.Queue
	tproto, nproto, typ := icmp.ProtocolNumber4, ipv4.ProtocolNumber, byte(header.ICMPv4Echo)
	if dst.Is6() {
		tproto, nproto, typ = icmp.ProtocolNumber6, ipv6.ProtocolNumber, byte(header.ICMPv6EchoRequest)
	}
	ep, terr := s.NewEndpoint(tproto, nproto, &wq)
	if terr != nil {
		return 0, fmt.Errorf("netstack: ping endpoint: %v", terr)
	}
	defer ep.Close()
	msg := make([]byte, 8+len(payload))
	msg[0] = typ
	binary.BigEndian.PutUint16(msg[6:], seq)
	copy(msg[8:], payload)
	to := tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(dst.AsSlice())}

	we, ch := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&we)
	defer wq.EventUnregister(&we)

	start := time.Now()
	if _, terr := ep.Write(bytes.NewReader(msg), tcpip.WriteOptions{To: &to}); terr != nil {
		return 0, fmt.Errorf("netstack: ping write: %v", terr)
	}
	buf := make([]byte, 8+len(payload)+64)
	for {
		w := tcpip.SliceWriter(buf)
		res, terr := ep.Read(&w, tcpip.ReadOptions{})
		if terr == nil {
			n := res.Count
			if n >= 8 && binary.BigEndian.Uint16(buf[6:]) == seq {
				return time.Since(start), nil
			}
			continue
		}
		if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
			return 0, fmt.Errorf("netstack: ping read: %v", terr)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: %v", ErrPingTimeout, ctx.Err())
		}
	}
}

// Ensure net.Conn is what callers get.
var _ net.Conn = (*gonet.TCPConn)(nil)
