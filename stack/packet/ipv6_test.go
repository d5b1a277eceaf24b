package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func TestParseIPv6(t *testing.T) {
	inner := mkIPv4(0x2e, 64, ProtoUDP, hostV4, peerV4, mkUDP(40000, 53, []byte("q")))
	plain := mkIPv6(0x2e, ProtoIPIP, 64, b4V6, aftrV6, nil, inner)
	tests := []struct {
		name        string
		pkt         []byte
		wantErr     error
		wantNH      uint8
		wantPayload []byte
		wantLen     int // of p.Packet
	}{
		{"RFC 2473 §5: next header 4", plain, nil, ProtoIPIP, inner, len(plain)},
		{"RFC 8200 §3: octets past the payload length are cut",
			append(bytes.Clone(plain), 0xde, 0xad), nil, ProtoIPIP, inner, len(plain)},
		{"RFC 8200 §4.3, RFC 2473 §4.1.1: hop-by-hop then destination options (encapsulation limit) then IPv4",
			mkIPv6(0, ipv6HopByHop, 64, b4V6, aftrV6, [][]byte{hopByHop(ipv6DestOpts), tunnelEncapLimit(ProtoIPIP)}, inner),
			nil, ProtoIPIP, inner, 40 + 8 + 16 + len(inner)},
		{"RFC 8200 §4.4: routing header with segments left 0",
			mkIPv6(0, ipv6Routing, 64, b4V6, aftrV6, [][]byte{routingHdr(ProtoIPIP)}, inner),
			nil, ProtoIPIP, inner, 40 + 24 + len(inner)},
		{"RFC 8200 §4.3: extension headers before ICMPv6",
			mkIPv6(0, ipv6HopByHop, 255, b4V6, aftrV6, [][]byte{hopByHop(ProtoICMPv6)}, []byte{128, 0, 0, 0, 0, 0, 0, 0}),
			nil, ProtoICMPv6, []byte{128, 0, 0, 0, 0, 0, 0, 0}, 56},
		{"RFC 8200 §4.7: no next header",
			mkIPv6(0, ipv6NoNext, 64, b4V6, aftrV6, nil, nil), nil, ipv6NoNext, []byte{}, 40},
		{"empty payload, next header 4",
			mkIPv6(0, ProtoIPIP, 64, b4V6, aftrV6, nil, nil), nil, ProtoIPIP, []byte{}, 40},
		{"RFC 8200 §4.5: fragment header",
			mkIPv6(0, ipv6Fragment, 64, b4V6, aftrV6, [][]byte{fragmentHdr(ProtoIPIP)}, inner), ErrFragment, 0, nil, 0},
		{"RFC 8200 §4.5: fragment header after hop-by-hop",
			mkIPv6(0, ipv6HopByHop, 64, b4V6, aftrV6, [][]byte{hopByHop(ipv6Fragment), fragmentHdr(ProtoIPIP)}, inner), ErrFragment, 0, nil, 0},
		{"RFC 8200 §4.3: hop-by-hop length runs past the packet",
			mkIPv6(0, ipv6HopByHop, 64, b4V6, aftrV6, nil, []byte{ProtoIPIP, 5, 1, 4, 0, 0, 0, 0}), ErrExtHeader, 0, nil, 0},
		{"RFC 8200 §4.6: destination options length runs past the packet",
			mkIPv6(0, ipv6HopByHop, 64, b4V6, aftrV6, [][]byte{hopByHop(ipv6DestOpts)}, tunnelEncapLimit(ProtoIPIP)[:15]), ErrExtHeader, 0, nil, 0},
		{"RFC 8200 §4: extension header shorter than 8 octets",
			mkIPv6(0, ipv6DestOpts, 64, b4V6, aftrV6, nil, []byte{ProtoIPIP, 0, 1, 2, 0, 0}), ErrExtHeader, 0, nil, 0},
		{"RFC 8200 §4: extension header announced, nothing follows",
			mkIPv6(0, ipv6Routing, 64, b4V6, aftrV6, nil, nil), ErrExtHeader, 0, nil, 0},
		{"RFC 8200 §4: extension header hidden past the payload length", func() []byte {
			b := mkIPv6(0, ipv6HopByHop, 64, b4V6, aftrV6, [][]byte{hopByHop(ProtoIPIP)}, nil)
			binary.BigEndian.PutUint16(b[4:], 0)
			return b
		}(), ErrExtHeader, 0, nil, 0},
		{"RFC 8200 §3: payload length beyond the slice", plain[:len(plain)-1], ErrIPv6Header, 0, nil, 0},
		{"RFC 8200 §3: payload length 65535, 10 octets present", func() []byte {
			b := mkIPv6(0, ProtoIPIP, 64, b4V6, aftrV6, nil, make([]byte, 10))
			binary.BigEndian.PutUint16(b[4:], 0xffff)
			return b
		}(), ErrIPv6Header, 0, nil, 0},
		{"shorter than the fixed header", plain[:39], ErrShort, 0, nil, 0},
		{"empty", nil, ErrShort, 0, nil, 0},
		{"a small IPv4 packet is shorter than the IPv6 header", inner, ErrShort, 0, nil, 0},
		{"RFC 8200 §3: version 4, 40 octets", append([]byte{0x45}, plain[1:]...), ErrVersion, 0, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p IPv6
			err := ParseIPv6(tt.pkt, &p)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseIPv6: err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if p.NextHeader != tt.wantNH || !bytes.Equal(p.Payload, tt.wantPayload) || len(p.Packet) != tt.wantLen {
				t.Errorf("next header %d payload %x packet %d octets; want %d %x %d",
					p.NextHeader, p.Payload, len(p.Packet), tt.wantNH, tt.wantPayload, tt.wantLen)
			}
			if p.Src != b4V6 || p.Dst != aftrV6 || p.HopLimit != tt.pkt[7] {
				t.Errorf("src %v dst %v hop limit %d", p.SrcAddr(), p.DstAddr(), p.HopLimit)
			}
			if &p.Packet[0] != &tt.pkt[0] {
				t.Error("Packet does not alias the input")
			}
		})
	}
}

// TestParseIPv6Fields: traffic class, flow label and addresses are read
// where RFC 8200 §3 puts them; a flow label does not leak into the class.
func TestParseIPv6Fields(t *testing.T) {
	for _, tc := range []uint8{0, 0x01, 0x03, 0xb8, 0xff} {
		for _, fl := range []uint32{0, 1, 0xfffff} {
			b := make([]byte, 40)
			header.IPv6(b).Encode(&header.IPv6Fields{
				TrafficClass: tc, FlowLabel: fl, TransportProtocol: ProtoIPIP, HopLimit: 17,
				SrcAddr: addr6(otherV6), DstAddr: addr6(b4V6),
			})
			var p IPv6
			if err := ParseIPv6(b, &p); err != nil {
				t.Fatal(err)
			}
			if p.TrafficClass != tc || p.HopLimit != 17 || p.NextHeader != ProtoIPIP ||
				p.SrcAddr() != netip.AddrFrom16(otherV6) || p.DstAddr() != netip.AddrFrom16(b4V6) {
				t.Errorf("tc %#x flow %#x: parsed %+v", tc, fl, p)
			}
		}
	}
}

// TestPutIPv6Header checks the builder byte for byte against gvisor's
// encoder, flow label 0 (RFC 2473 §6.5).
func TestPutIPv6Header(t *testing.T) {
	got := bytes.Repeat([]byte{0xaa}, 40)
	PutIPv6Header(got, 0xb9, 1234, ProtoIPIP, 63, aftrV6, b4V6)
	want := make([]byte, 40)
	header.IPv6(want).Encode(&header.IPv6Fields{
		TrafficClass: 0xb9, PayloadLength: 1234, TransportProtocol: ProtoIPIP, HopLimit: 63,
		SrcAddr: addr6(aftrV6), DstAddr: addr6(b4V6),
	})
	if !bytes.Equal(got, want) {
		t.Errorf("PutIPv6Header = %x\n        gvisor = %x", got, want)
	}
}

func TestEncapsulate(t *testing.T) {
	tests := []struct {
		name     string
		tos      uint8
		off      int
		hopLimit uint8
		wantCopy bool
	}{
		{"exact headroom: in place", 0, 40, 64, false},
		{"RFC 6333 §7.1: EF class copied, more headroom", 0xb8, 64, 64, false},
		{"RFC 6333 §7.1: ECN CE copied", 0x03, 40, 1, false},
		{"RFC 6333 §7.1: all ones copied", 0xff, 41, 255, false},
		{"no headroom: copied", 0x2e, 0, 64, true},
		{"too little headroom: copied", 0x10, 39, 32, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := mkIPv4(tt.tos, 63, ProtoTCP, hostV4, peerV4, mkTCP(40000, 443))
			buf := make([]byte, tt.off+len(inner))
			for i := range tt.off {
				buf[i] = 0xee // junk headroom the header must overwrite
			}
			copy(buf[tt.off:], inner)
			out := Encapsulate(buf, tt.off, b4V6, aftrV6, tt.hopLimit)

			if len(out) != 40+len(inner) {
				t.Fatalf("len = %d, want %d", len(out), 40+len(inner))
			}
			if shared := &out[len(out)-1] == &buf[len(buf)-1]; shared == tt.wantCopy {
				t.Errorf("output shares buf's backing array: %v, want %v", shared, !tt.wantCopy)
			}
			if !tt.wantCopy && &out[0] != &buf[tt.off-40] {
				t.Error("in-place output does not start 40 octets before the inner packet")
			}
			if tt.wantCopy && !bytes.Equal(buf[tt.off:], inner) {
				t.Error("copying Encapsulate changed its input")
			}
			if !bytes.Equal(out[40:], inner) {
				t.Errorf("inner packet changed: %x", out[40:])
			}
			h := header.IPv6(out)
			tc, fl := h.TOS()
			if !h.IsValid(len(out)) || h.PayloadLength() != uint16(len(inner)) {
				t.Errorf("gvisor: header invalid or payload length %d", h.PayloadLength())
			}
			if tc != tt.tos {
				t.Errorf("RFC 6333 §7.1: traffic class %#02x, want inner TOS %#02x", tc, tt.tos)
			}
			if fl != 0 {
				t.Errorf("RFC 2473 §6.5: flow label %#x, want 0", fl)
			}
			if h.HopLimit() != tt.hopLimit {
				t.Errorf("RFC 2473 §6.3: hop limit %d, want the tunnel's %d (inner TTL is 63)", h.HopLimit(), tt.hopLimit)
			}
			if h.NextHeader() != ProtoIPIP {
				t.Errorf("RFC 2473 §5: next header %d, want 4", h.NextHeader())
			}
			if h.SourceAddress() != addr6(b4V6) || h.DestinationAddress() != addr6(aftrV6) {
				t.Errorf("addresses %v -> %v", h.SourceAddress(), h.DestinationAddress())
			}
		})
	}
}

// TestEncapsulateNoAlloc: with headroom the hot path allocates nothing.
func TestEncapsulateNoAlloc(t *testing.T) {
	inner := mkIPv4(0, 64, ProtoUDP, hostV4, peerV4, mkUDP(1, 2, make([]byte, 1472)))
	buf := append(make([]byte, 40), inner...)
	if n := testing.AllocsPerRun(100, func() { Encapsulate(buf, 40, b4V6, aftrV6, 64) }); n != 0 {
		t.Errorf("Encapsulate with headroom: %v allocs, want 0", n)
	}
}

func TestDecapsulate(t *testing.T) {
	inner := mkIPv4(0xb8, 64, ProtoUDP, hostV4, peerV4, mkUDP(40000, 53, []byte("query")))
	badCsum := bytes.Clone(inner)
	badCsum[10] ^= 0xff
	tests := []struct {
		name    string
		pkt     []byte
		wantErr error
	}{
		{"RFC 2473 §3.3: softwire packet", mkIPv6(0xb8, ProtoIPIP, 64, b4V6, aftrV6, nil, inner), nil},
		{"RFC 2473 §3.3, §4.1.1: after an encapsulation-limit option",
			mkIPv6(0, ipv6DestOpts, 64, b4V6, aftrV6, [][]byte{tunnelEncapLimit(ProtoIPIP)}, inner), nil},
		{"RFC 2473 §3.3: outer payload padded past the inner total length",
			mkIPv6(0, ProtoIPIP, 64, b4V6, aftrV6, nil, append(bytes.Clone(inner), 0, 0, 0)), nil},
		{"RFC 2473 §3: next header 41 (IPv6 in IPv6) is not a softwire",
			mkIPv6(0, 41, 64, b4V6, aftrV6, nil, make([]byte, 40)), ErrNotIPIP},
		{"UDP over IPv6 is not a softwire",
			mkIPv6(0, ProtoUDP, 64, b4V6, aftrV6, nil, mkUDP(1, 2, nil)), ErrNotIPIP},
		{"inner header checksum bad", mkIPv6(0, ProtoIPIP, 64, b4V6, aftrV6, nil, badCsum), ErrIPv4Csum},
		{"inner packet truncated", mkIPv6(0, ProtoIPIP, 64, b4V6, aftrV6, nil, inner[:len(inner)-1]), ErrIPv4Header},
		{"inner header truncated", mkIPv6(0, ProtoIPIP, 64, b4V6, aftrV6, nil, inner[:19]), ErrShort},
		{"inner is IPv6", mkIPv6(0, ProtoIPIP, 64, b4V6, aftrV6, nil, mkIPv6(0, ProtoUDP, 1, b4V6, aftrV6, nil, nil)), ErrVersion},
		{"outer fragment", mkIPv6(0, ipv6Fragment, 64, b4V6, aftrV6, [][]byte{fragmentHdr(ProtoIPIP)}, inner), ErrFragment},
		{"outer truncated", mkIPv6(0, ProtoIPIP, 64, b4V6, aftrV6, nil, inner)[:50], ErrIPv6Header},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var outer IPv6
			got, err := Decapsulate(tt.pkt, &outer)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Decapsulate: err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if !bytes.Equal(got, inner) {
				t.Errorf("inner = %x, want %x", []byte(got), inner)
			}
			if &got[0] != &outer.Payload[0] || &outer.Packet[0] != &tt.pkt[0] {
				t.Error("inner packet does not alias the input")
			}
			if outer.Src != b4V6 || outer.Dst != aftrV6 || outer.NextHeader != ProtoIPIP {
				t.Errorf("outer = %+v", outer)
			}
		})
	}
}

// TestEncapsulateRoundTrip: Decapsulate(Encapsulate(x)) gives x back, and the
// traffic class carries the TOS both ways (RFC 6333 §7.1).
func TestEncapsulateRoundTrip(t *testing.T) {
	for _, l4 := range [][]byte{
		mkTCP(40000, 443),
		mkUDP(40001, 53, make([]byte, 1000)),
		mkICMPv4(ICMPv4EchoRequest, 0, 0x1234_0001, []byte("abc")),
		nil,
	} {
		for _, off := range []int{0, 40} {
			inner := mkIPv4(0x89, 64, ProtoUDP, b4WKA, peerV4, l4)
			buf := append(make([]byte, off), inner...)
			out := Encapsulate(buf, off, b4V6, aftrV6, 64)
			var outer IPv6
			got, err := Decapsulate(out, &outer)
			if err != nil {
				t.Fatalf("off %d: %v", off, err)
			}
			if !bytes.Equal(got, inner) || outer.TrafficClass != got.TOS() || outer.HopLimit != 64 {
				t.Errorf("off %d: round trip gave %x class %#x", off, []byte(got), outer.TrafficClass)
			}
		}
	}
}
