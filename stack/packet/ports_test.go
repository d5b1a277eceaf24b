package packet

import (
	"errors"
	"testing"
)

func TestPorts(t *testing.T) {
	// The invoking packets of the ICMP errors below: sent by the customer,
	// bounced back by a router, so the embedded source is the customer.
	tcpOut := mkIPv4(0, 64, ProtoTCP, hostV4, peerV4, mkTCP(40000, 443))
	udpOut := mkIPv4(0, 64, ProtoUDP, hostV4, peerV4, mkUDP(40001, 53, []byte("query")))
	echoOut := mkIPv4(0, 64, ProtoICMP, hostV4, peerV4, mkICMPv4(ICMPv4EchoRequest, 0, 0x9c41_0001, []byte("ping")))
	greOut := mkIPv4(0, 64, 47, hostV4, peerV4, make([]byte, 8))
	optsOut := mkIPv4Opts(ProtoUDP, hostV4, peerV4, mkUDP(40002, 123, nil))
	errAbout := func(typ, code uint8, invoking []byte) []byte {
		return mkIPv4(0, 64, ProtoICMP, routerV4, hostV4, mkICMPv4(typ, code, 0, invoking))
	}
	inner := func(proto uint8, sport, dport uint16) (f Flow) {
		f.Proto = ProtoICMP
		f.ICMPError = true
		f.Inner.Proto, f.Inner.Src, f.Inner.Dst = proto, hostV4, peerV4
		f.Inner.SrcPort, f.Inner.DstPort = sport, dport
		return f
	}
	tests := []struct {
		name    string
		pkt     []byte
		want    Flow
		wantErr error
	}{
		{"RFC 7596 §6.1: TCP ports",
			mkIPv4(0, 64, ProtoTCP, peerV4, hostV4, mkTCP(443, 40000)),
			Flow{Proto: ProtoTCP, SrcPort: 443, DstPort: 40000}, nil},
		{"RFC 7596 §6.1: UDP ports",
			mkIPv4(0, 64, ProtoUDP, peerV4, hostV4, mkUDP(53, 40001, nil)),
			Flow{Proto: ProtoUDP, SrcPort: 53, DstPort: 40001}, nil},
		{"RFC 791 §3.1: ports found after IPv4 options",
			mkIPv4Opts(ProtoTCP, peerV4, hostV4, mkTCP(22, 40003)),
			Flow{Proto: ProtoTCP, SrcPort: 22, DstPort: 40003}, nil},
		{"RFC 7596 §8.1 step 2: echo request identifier is the port",
			mkIPv4(0, 64, ProtoICMP, peerV4, hostV4, mkICMPv4(ICMPv4EchoRequest, 0, 0x1234_0007, nil)),
			Flow{Proto: ProtoICMP, SrcPort: 0x1234, DstPort: 0x1234}, nil},
		{"RFC 7596 §8.1 step 2: echo reply identifier is the port",
			mkIPv4(0, 64, ProtoICMP, peerV4, hostV4, mkICMPv4(ICMPv4EchoReply, 0, 0xfffe_0000, []byte("data"))),
			Flow{Proto: ProtoICMP, SrcPort: 0xfffe, DstPort: 0xfffe}, nil},
		{"RFC 7596 §8.1 step 3, RFC 5508 §4.1: destination unreachable about TCP",
			errAbout(ICMPv4DstUnreachable, 3, tcpOut), inner(ProtoTCP, 40000, 443), nil},
		{"RFC 7596 §8.1 step 3: time exceeded about UDP",
			errAbout(ICMPv4TimeExceeded, 0, udpOut), inner(ProtoUDP, 40001, 53), nil},
		{"RFC 7596 §8.1 step 3: parameter problem about an echo request",
			errAbout(ICMPv4ParamProblem, 0, echoOut), inner(ProtoICMP, 0x9c41, 0x9c41), nil},
		{"RFC 792: error embedding the IP header and only 64 bits of TCP",
			errAbout(ICMPv4DstUnreachable, 1, tcpOut[:IPv4HeaderLen+8]), inner(ProtoTCP, 40000, 443), nil},
		{"RFC 5508 §4.1: error embedding a packet with IPv4 options",
			errAbout(ICMPv4DstUnreachable, 13, optsOut), inner(ProtoUDP, 40002, 123), nil},
		{"RFC 5508 §4.1: embedded TCP truncated to 3 octets",
			errAbout(ICMPv4DstUnreachable, 1, tcpOut[:IPv4HeaderLen+3]), inner(ProtoTCP, 0, 0), ErrShort},
		{"RFC 5508 §4.1: embedded header truncated",
			errAbout(ICMPv4TimeExceeded, 0, udpOut[:IPv4HeaderLen-1]), Flow{Proto: ProtoICMP, ICMPError: true}, ErrShort},
		{"RFC 5508 §4.1: embedded echo truncated to 4 octets",
			errAbout(ICMPv4TimeExceeded, 0, echoOut[:IPv4HeaderLen+4]), inner(ProtoICMP, 0, 0), ErrShort},
		{"RFC 5508 §4.1: embedded options run past the data",
			errAbout(ICMPv4DstUnreachable, 1, optsOut[:IPv4HeaderLen+6]), Flow{Proto: ProtoICMP, ICMPError: true}, ErrShort},
		{"RFC 5508 §4.1: embedded packet is not IPv4",
			errAbout(ICMPv4DstUnreachable, 1, append([]byte{0x60}, tcpOut[1:]...)), Flow{Proto: ProtoICMP, ICMPError: true}, ErrShort},
		{"RFC 5508 §4.1: embedded IHL below 5",
			errAbout(ICMPv4DstUnreachable, 1, append([]byte{0x44}, tcpOut[1:]...)), Flow{Proto: ProtoICMP, ICMPError: true}, ErrShort},
		{"RFC 7596 §8.1: embedded protocol without ports",
			errAbout(ICMPv4DstUnreachable, 2, greOut), inner(47, 0, 0), ErrNoPorts},
		{"RFC 7596 §8.1: error with no embedded packet",
			errAbout(ICMPv4DstUnreachable, 1, nil), Flow{Proto: ProtoICMP, ICMPError: true}, ErrShort},
		{"RFC 7596 §8.1: other ICMP types (timestamp) are dropped",
			mkIPv4(0, 64, ProtoICMP, peerV4, hostV4, mkICMPv4(13, 0, 0x1234_0001, make([]byte, 12))),
			Flow{Proto: ProtoICMP}, ErrNoPorts},
		{"RFC 792: ICMP shorter than 8 octets",
			mkIPv4(0, 64, ProtoICMP, peerV4, hostV4, []byte{ICMPv4EchoRequest, 0, 0, 0, 0x12, 0x34, 0}),
			Flow{Proto: ProtoICMP}, ErrShort},
		{"TCP shorter than its ports",
			mkIPv4(0, 64, ProtoTCP, peerV4, hostV4, []byte{1, 2, 3}), Flow{Proto: ProtoTCP}, ErrShort},
		{"UDP with no header", mkIPv4(0, 64, ProtoUDP, peerV4, hostV4, nil), Flow{Proto: ProtoUDP}, ErrShort},
		{"RFC 791 §2.3: first fragment (MF, offset 0) carries the ports",
			withFrag(mkIPv4(0, 64, ProtoUDP, peerV4, hostV4, mkUDP(4500, 40004, make([]byte, 64))), true, 0),
			Flow{Proto: ProtoUDP, SrcPort: 4500, DstPort: 40004}, nil},
		{"RFC 791 §2.3: non-first fragment has no transport header",
			withFrag(mkIPv4(0, 64, ProtoUDP, peerV4, hostV4, mkUDP(4500, 40004, nil)), true, 185),
			Flow{Proto: ProtoUDP}, ErrFragment},
		{"RFC 791 §2.3: last fragment",
			withFrag(mkIPv4(0, 64, ProtoTCP, peerV4, hostV4, mkTCP(1, 2)), false, 1),
			Flow{Proto: ProtoTCP}, ErrFragment},
		{"non-first fragment of ICMP",
			withFrag(mkIPv4(0, 64, ProtoICMP, peerV4, hostV4, mkICMPv4(ICMPv4EchoReply, 0, 1<<16, nil)), false, 3),
			Flow{Proto: ProtoICMP}, ErrFragment},
		{"GRE has no ports", mkIPv4(0, 64, 47, peerV4, hostV4, make([]byte, 8)), Flow{Proto: 47}, ErrNoPorts},
		{"ESP has no ports", mkIPv4(0, 64, 50, peerV4, hostV4, make([]byte, 8)), Flow{Proto: 50}, ErrNoPorts},
		{"IPv6-in-IPv4 has no ports", mkIPv4(0, 64, 41, peerV4, hostV4, make([]byte, 40)), Flow{Proto: 41}, ErrNoPorts},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParseIPv4(tt.pkt)
			if err != nil {
				t.Fatalf("test packet does not parse: %v", err)
			}
			f, err := p.Ports()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Ports: err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				// On error only the outer protocol and the error flag are
				// defined; the counters of drop reasons need no more.
				if f.Proto != tt.want.Proto || f.ICMPError != tt.want.ICMPError {
					t.Errorf("Ports = %+v, want proto %d ICMPError %v", f, tt.want.Proto, tt.want.ICMPError)
				}
				return
			}
			if f != tt.want {
				t.Errorf("Ports = %+v\n          want %+v", f, tt.want)
			}
		})
	}
}

// TestPortsOfICMPv4Error: the errors this package builds are read back by
// Ports (RFC 7596 §8.1 step 3).
func TestPortsOfICMPv4Error(t *testing.T) {
	invoking := mkIPv4(0, 1, ProtoUDP, hostV4, peerV4, mkUDP(40005, 33434, make([]byte, 1400)))
	b := ICMPv4Error(ICMPv4TimeExceeded, 0, 0, routerV4, hostV4, 64, invoking, MaxICMPv4Error)
	p, err := ParseIPv4(b)
	if err != nil {
		t.Fatal(err)
	}
	f, err := p.Ports()
	if err != nil {
		t.Fatal(err)
	}
	if !f.ICMPError || f.Inner.Proto != ProtoUDP || f.Inner.Src != hostV4 || f.Inner.Dst != peerV4 ||
		f.Inner.SrcPort != 40005 || f.Inner.DstPort != 33434 {
		t.Errorf("Ports = %+v", f)
	}
}

// TestIsICMPv4Error: exactly the RFC 792 errors that embed the invoking
// packet and RFC 5508 §7 asks a NAT to translate.
func TestIsICMPv4Error(t *testing.T) {
	for typ := range 256 {
		want := typ == 3 || typ == 11 || typ == 12
		if got := IsICMPv4Error(uint8(typ)); got != want {
			t.Errorf("IsICMPv4Error(%d) = %v, want %v", typ, got, want)
		}
	}
}
