package packet

import "testing"

// Sinks keep the compiler from discarding the benchmarked calls.
var (
	sinkBytes []byte
	sinkFlow  Flow
	sinkErr   error
)

// BenchmarkEncapsulate: a full-size IPv4 packet with 40 octets of headroom,
// the B4's and lwAFTR's hot path; it must not allocate.
func BenchmarkEncapsulate(b *testing.B) {
	inner := mkIPv4(0xb8, 64, ProtoUDP, hostV4, peerV4, mkUDP(40000, 4500, make([]byte, 1500-28)))
	buf := append(make([]byte, IPv6HeaderLen), inner...)
	b.ReportAllocs()
	b.SetBytes(int64(len(inner)))
	for b.Loop() {
		sinkBytes = Encapsulate(buf, IPv6HeaderLen, b4V6, aftrV6, 64)
	}
}

// BenchmarkDecapsulate: the same packet as it arrives from the softwire.
func BenchmarkDecapsulate(b *testing.B) {
	inner := mkIPv4(0xb8, 64, ProtoUDP, hostV4, peerV4, mkUDP(40000, 4500, make([]byte, 1500-28)))
	pkt := Encapsulate(inner, 0, b4V6, aftrV6, 64)
	var outer IPv6
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		sinkBytes, sinkErr = Decapsulate(pkt, &outer)
	}
	if sinkErr != nil {
		b.Fatal(sinkErr)
	}
}

// BenchmarkPorts: the port-range router's lookup key for each kind of packet.
func BenchmarkPorts(b *testing.B) {
	udp := mkIPv4(0, 64, ProtoUDP, peerV4, hostV4, mkUDP(53, 40000, make([]byte, 100)))
	for _, bc := range []struct {
		name string
		pkt  []byte
	}{
		{"tcp", mkIPv4(0, 64, ProtoTCP, peerV4, hostV4, mkTCP(443, 40000))},
		{"udp", udp},
		{"icmp-echo", mkIPv4(0, 64, ProtoICMP, peerV4, hostV4, mkICMPv4(ICMPv4EchoReply, 0, 0x9c40_0001, make([]byte, 56)))},
		{"icmp-error", ICMPv4Error(ICMPv4DstUnreachable, 3, 0, routerV4, hostV4, 64, udp, MaxICMPv4Error)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p, err := ParseIPv4(bc.pkt)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				sinkFlow, sinkErr = p.Ports()
			}
			if sinkErr != nil {
				b.Fatal(sinkErr)
			}
		})
	}
}

// BenchmarkDecTTL: the forwarding step with its incremental checksum update.
// The TTL is reset from 255 when it runs out, once every 254 iterations.
func BenchmarkDecTTL(b *testing.B) {
	p := IPv4(mkIPv4(0, 255, ProtoUDP, hostV4, peerV4, mkUDP(40000, 4500, make([]byte, 1500-28))))
	fresh := [IPv4HeaderLen]byte(p)
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if sinkErr = p.DecTTL(); sinkErr != nil {
			copy(p, fresh[:])
		}
	}
}
