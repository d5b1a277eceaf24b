package nat

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lw4o6/lw4o6/stack/portset"
)

// Documentation addresses only: LAN hosts in 192.0.2.0/24, the public
// address and remotes in 203.0.113.0/24 and 198.51.100.0/24.
var (
	lanA    = netip.MustParseAddr("192.0.2.10")
	lanB    = netip.MustParseAddr("192.0.2.11")
	lanR    = netip.MustParseAddr("192.0.2.1") // a LAN router
	pub     = netip.MustParseAddr("203.0.113.5")
	pub2    = netip.MustParseAddr("203.0.113.6")
	remote1 = netip.MustParseAddr("198.51.100.1")
	remote2 = netip.MustParseAddr("198.51.100.2")
	router  = netip.MustParseAddr("198.51.100.254")

	testSet = portset.Range{First: 4096, Size: 1024}
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTable returns a table provisioned with pub and testSet on a fake clock.
func newTable(t testing.TB, cfg Config) (*Table, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg.Now = clk.Now
	tb := New(cfg)
	if err := tb.SetExternal(pub, testSet); err != nil {
		t.Fatal(err)
	}
	return tb, clk
}

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

func taddr(a netip.Addr) tcpip.Address { return tcpip.AddrFrom4(a.As4()) }

func ipHeader(b []byte, proto uint8, src, dst netip.Addr, flags uint8, fragOff uint16) {
	header.IPv4(b).Encode(&header.IPv4Fields{
		TotalLength:    uint16(len(b)),
		ID:             0x1234,
		Flags:          flags,
		FragmentOffset: fragOff,
		TTL:            64,
		Protocol:       proto,
		SrcAddr:        taddr(src),
		DstAddr:        taddr(dst),
	})
	h := header.IPv4(b)
	h.SetChecksum(^h.CalculateChecksum())
}

// tcpPacket builds an IPv4/TCP segment with valid checksums.
func tcpPacket(src, dst netip.AddrPort, flags header.TCPFlags, payload []byte) []byte {
	b := make([]byte, 20+20+len(payload))
	ipHeader(b, protoTCP, src.Addr(), dst.Addr(), 0, 0)
	tcp := header.TCP(b[20:])
	tcp.Encode(&header.TCPFields{
		SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: 1000, AckNum: 2000,
		DataOffset: 20, Flags: flags, WindowSize: 65535,
	})
	copy(tcp[20:], payload)
	ph := header.PseudoHeaderChecksum(header.TCPProtocolNumber, taddr(src.Addr()), taddr(dst.Addr()), uint16(len(tcp)))
	tcp.SetChecksum(^checksum.Checksum(tcp, ph))
	return b
}

// udpPacket builds an IPv4/UDP datagram with a valid checksum.
func udpPacket(src, dst netip.AddrPort, payload []byte) []byte {
	b := make([]byte, 20+8+len(payload))
	ipHeader(b, protoUDP, src.Addr(), dst.Addr(), 0, 0)
	udp := header.UDP(b[20:])
	udp.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(8 + len(payload))})
	copy(udp[8:], payload)
	ph := header.PseudoHeaderChecksum(header.UDPProtocolNumber, taddr(src.Addr()), taddr(dst.Addr()), uint16(len(udp)))
	c := ^checksum.Checksum(udp, ph)
	if c == 0 {
		c = 0xffff
	}
	udp.SetChecksum(c)
	return b
}

// echoPacket builds an ICMP echo request or reply.
func echoPacket(src, dst netip.Addr, typ header.ICMPv4Type, id, seq uint16, payload []byte) []byte {
	b := make([]byte, 20+8+len(payload))
	ipHeader(b, protoICMP, src, dst, 0, 0)
	icmp := header.ICMPv4(b[20:])
	icmp.SetType(typ)
	icmp.SetIdent(id)
	icmp.SetSequence(seq)
	copy(icmp[8:], payload)
	icmp.SetChecksum(^checksum.Checksum(icmp, 0))
	return b
}

// icmpError builds an ICMP error from src to dst quoting quoted (an IPv4
// datagram, already cut to the length to quote).
func icmpError(src, dst netip.Addr, typ header.ICMPv4Type, code header.ICMPv4Code, quoted []byte) []byte {
	b := make([]byte, 20+8+len(quoted))
	ipHeader(b, protoICMP, src, dst, 0, 0)
	icmp := header.ICMPv4(b[20:])
	icmp.SetType(typ)
	icmp.SetCode(code)
	copy(icmp[8:], quoted)
	icmp.SetChecksum(^checksum.Checksum(icmp, 0))
	return b
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func srcOf(b []byte) netip.AddrPort {
	h := header.IPv4(b)
	a := netip.AddrFrom4([4]byte(h.SourceAddressSlice()))
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[h.HeaderLength():]))
}

func dstOf(b []byte) netip.AddrPort {
	h := header.IPv4(b)
	a := netip.AddrFrom4([4]byte(h.DestinationAddressSlice()))
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[h.HeaderLength()+2:]))
}

func echoID(b []byte) uint16 { return header.ICMPv4(b[header.IPv4(b).HeaderLength():]).Ident() }

// checksumsValid recomputes every checksum of an IPv4 packet from scratch:
// the IPv4 header, the TCP/UDP checksum with its pseudo-header or the ICMP
// checksum (unless the packet is a first fragment), and for an ICMP error
// the quoted IPv4 header and, when the quoted datagram is complete, its
// transport checksum. It returns nil or what is wrong.
func checksumsValid(b []byte) error {
	if len(b) < 20 {
		return fmt.Errorf("short")
	}
	h := header.IPv4(b)
	if !h.IsValid(len(b)) {
		return fmt.Errorf("invalid IPv4 header")
	}
	if !h.IsChecksumValid() {
		return fmt.Errorf("IPv4 header checksum %#04x wrong", h.Checksum())
	}
	if h.More() || h.FragmentOffset() != 0 {
		return nil
	}
	b = b[:h.TotalLength()]
	return transportValid(h.Protocol(), h.SourceAddressSlice(), h.DestinationAddressSlice(), b[h.HeaderLength():], true)
}

func transportValid(proto uint8, src, dst, l4 []byte, outer bool) error {
	switch proto {
	case protoTCP, protoUDP:
		if proto == protoUDP && len(l4) >= 8 && binary.BigEndian.Uint16(l4[6:]) == 0 {
			return nil
		}
		ph := header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(proto),
			tcpip.AddrFrom4Slice(src), tcpip.AddrFrom4Slice(dst), uint16(len(l4)))
		if checksum.Checksum(l4, ph) != 0xffff {
			return fmt.Errorf("protocol %d checksum wrong", proto)
		}
	case protoICMP:
		if checksum.Checksum(l4, 0) != 0xffff {
			return fmt.Errorf("ICMP checksum wrong")
		}
		if !outer || len(l4) < 8+20 || !isICMPError(l4[0]) {
			return nil
		}
		e := header.IPv4(l4[8:])
		ihl := int(e.HeaderLength())
		if e[0]>>4 != 4 || ihl < 20 || ihl > len(e) {
			return nil
		}
		if !e.IsChecksumValid() {
			return fmt.Errorf("embedded IPv4 header checksum wrong")
		}
		if int(e.TotalLength()) == len(e) && e.FragmentOffset() == 0 && !e.More() {
			if err := transportValid(e.Protocol(), e.SourceAddressSlice(), e.DestinationAddressSlice(), e[ihl:], false); err != nil {
				return fmt.Errorf("embedded: %w", err)
			}
		}
	}
	return nil
}

func mustValid(t testing.TB, b []byte) {
	t.Helper()
	if err := checksumsValid(b); err != nil {
		t.Fatalf("after translation: %v\n% x", err, b)
	}
}

func mustOut(t testing.TB, tb *Table, b []byte) {
	t.Helper()
	hp, err := tb.Outbound(b)
	if err != nil || hp {
		t.Fatalf("Outbound = %v, %v; want false, nil", hp, err)
	}
	mustValid(t, b)
}

func mustIn(t testing.TB, tb *Table, b []byte) {
	t.Helper()
	if err := tb.Inbound(b); err != nil {
		t.Fatalf("Inbound = %v", err)
	}
	mustValid(t, b)
}
