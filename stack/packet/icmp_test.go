package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// TestICMPv6Error: RFC 4443 §2.4(c): "as much of invoking packet as possible
// without the ICMPv6 packet exceeding the minimum IPv6 MTU" (1280).
func TestICMPv6Error(t *testing.T) {
	tests := []struct {
		name     string
		typ      uint8
		code     uint8
		param    uint32
		invoking int // octets
		maxLen   int
		wantLen  int
	}{
		{"RFC 7596 §6.2: no binding, small invoking packet", ICMPv6DstUnreachable, ICMPv6CodeSourcePolicy, 0, 60, MaxICMPv6Error, 48 + 60},
		{"RFC 4443 §2.4(c): empty invoking packet", ICMPv6TimeExceeded, 0, 0, 0, MaxICMPv6Error, 48},
		{"RFC 4443 §2.4(c): odd length", ICMPv6ParamProblem, 0, 6, 77, MaxICMPv6Error, 48 + 77},
		{"RFC 4443 §2.4(c): exactly 1280", ICMPv6DstUnreachable, 3, 0, 1280 - 48, MaxICMPv6Error, 1280},
		{"RFC 4443 §2.4(c): one octet over is cut", ICMPv6DstUnreachable, 3, 0, 1280 - 47, MaxICMPv6Error, 1280},
		{"RFC 4443 §3.2: packet too big about a 1500-octet packet", ICMPv6PacketTooBig, 0, 1280, 1500, MaxICMPv6Error, 1280},
		{"RFC 4443 §2.4(c): jumbo-sized invoking packet", ICMPv6DstUnreachable, 0, 0, 65535, MaxICMPv6Error, 1280},
		{"smaller limit", ICMPv6DstUnreachable, 1, 0, 500, 100, 100},
		{"limit of exactly the headers", ICMPv6DstUnreachable, 1, 0, 500, 48, 48},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			invoking := make([]byte, tt.invoking)
			for i := range invoking {
				invoking[i] = byte(i*7 + 1)
			}
			orig := bytes.Clone(invoking)
			b := ICMPv6Error(tt.typ, tt.code, tt.param, aftrV6, b4V6, 63, invoking, tt.maxLen)
			if len(b) != tt.wantLen {
				t.Fatalf("len = %d, want %d", len(b), tt.wantLen)
			}
			if !bytes.Equal(invoking, orig) {
				t.Error("ICMPv6Error changed the invoking packet")
			}
			h := header.IPv6(b)
			if !h.IsValid(len(b)) || int(h.PayloadLength()) != len(b)-40 || h.NextHeader() != ProtoICMPv6 ||
				h.HopLimit() != 63 || h.SourceAddress() != addr6(aftrV6) || h.DestinationAddress() != addr6(b4V6) {
				t.Errorf("IPv6 header %x", b[:40])
			}
			checkICMPv6(t, b)
			var p IPv6
			var m ICMPv6
			if err := ParseIPv6(b, &p); err != nil {
				t.Fatal(err)
			}
			if err := ParseICMPv6(&p, &m); err != nil {
				t.Fatalf("ParseICMPv6: %v", err)
			}
			if m.Type != tt.typ || m.Code != tt.code || m.Param != tt.param {
				t.Errorf("type %d code %d param %d", m.Type, m.Code, m.Param)
			}
			if !bytes.Equal(m.Body, invoking[:len(b)-48]) {
				t.Error("body is not the head of the invoking packet")
			}
		})
	}
}

// TestICMPv4Error: RFC 1812 §4.3.2.3: as much of the original datagram as
// fits without the ICMP datagram exceeding 576 octets.
func TestICMPv4Error(t *testing.T) {
	tests := []struct {
		name     string
		typ      uint8
		code     uint8
		rest     uint32
		invoking int
		wantLen  int
	}{
		{"RFC 792: time exceeded, short invoking packet", ICMPv4TimeExceeded, 0, 0, 28, 56},
		{"RFC 1812 §4.3.2.3: exactly 576", ICMPv4DstUnreachable, 1, 0, 576 - 28, 576},
		{"RFC 1812 §4.3.2.3: one over is cut", ICMPv4DstUnreachable, 1, 0, 576 - 27, 576},
		{"RFC 1191 §4: fragmentation needed carries the next-hop MTU", ICMPv4DstUnreachable, 4, 1460, 1500, 576},
		{"RFC 792: parameter problem pointer", ICMPv4ParamProblem, 0, 9 << 24, 33, 28 + 33},
		{"empty invoking packet", ICMPv4DstUnreachable, 13, 0, 0, 28},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			invoking := make([]byte, tt.invoking)
			for i := range invoking {
				invoking[i] = byte(255 - i)
			}
			b := ICMPv4Error(tt.typ, tt.code, tt.rest, routerV4, hostV4, 64, invoking, MaxICMPv4Error)
			if len(b) != tt.wantLen {
				t.Fatalf("len = %d, want %d", len(b), tt.wantLen)
			}
			checkIPv4Header(t, b)
			p, err := ParseIPv4(b)
			if err != nil {
				t.Fatal(err)
			}
			if p.TotalLen() != len(b) || p.Protocol() != ProtoICMP || p.TTL() != 64 || p.Src() != routerV4 || p.Dst() != hostV4 || p.IsFragment() {
				t.Errorf("IPv4 header %x", b[:20])
			}
			m := p.Payload()
			if s := onesSum(m); s != 0xffff {
				t.Errorf("RFC 792: ICMP checksum: message sums to %#04x, want 0xffff", s)
			}
			if m[0] != tt.typ || m[1] != tt.code || binary.BigEndian.Uint32(m[4:]) != tt.rest {
				t.Errorf("ICMP header %x", m[:8])
			}
			if tt.code == 4 && header.ICMPv4(m).MTU() != uint16(tt.rest) {
				t.Errorf("gvisor reads next-hop MTU %d", header.ICMPv4(m).MTU())
			}
			if !bytes.Equal(m[8:], invoking[:len(b)-28]) {
				t.Error("body is not the head of the invoking packet")
			}
		})
	}
}

// TestICMPv6Echo: RFC 4443 §4.1 and §4.2.
func TestICMPv6Echo(t *testing.T) {
	for _, tt := range []struct {
		typ  uint8
		data []byte
	}{
		{ICMPv6EchoRequest, nil},
		{ICMPv6EchoRequest, []byte("odd")},
		{ICMPv6EchoReply, bytes.Repeat([]byte{0xff}, 1000)},
	} {
		b := ICMPv6Echo(tt.typ, b4V6, aftrV6, 64, 0xbeef_0102, tt.data)
		if len(b) != 48+len(tt.data) {
			t.Fatalf("len %d", len(b))
		}
		checkICMPv6(t, b)
		h := header.ICMPv6(b[40:])
		if h.Type() != header.ICMPv6Type(tt.typ) || h.Code() != 0 || h.Ident() != 0xbeef || h.Sequence() != 0x0102 {
			t.Errorf("gvisor reads type %d code %d id %#x seq %#x", h.Type(), h.Code(), h.Ident(), h.Sequence())
		}
		var p IPv6
		var m ICMPv6
		if err := ParseIPv6(b, &p); err != nil {
			t.Fatal(err)
		}
		if err := ParseICMPv6(&p, &m); err != nil {
			t.Fatal(err)
		}
		if m.Type != tt.typ || m.Param != 0xbeef_0102 || !bytes.Equal(m.Body, tt.data) {
			t.Errorf("parsed %+v", m)
		}
	}
}

// TestParseICMPv6: the checksum covers the RFC 8200 §8.1 pseudo-header and
// the whole message (RFC 4443 §2.3); a message that fails it is dropped.
func TestParseICMPv6(t *testing.T) {
	echo := ICMPv6Echo(ICMPv6EchoRequest, b4V6, aftrV6, 64, 1, []byte("hello"))
	tests := []struct {
		name    string
		pkt     []byte
		wantErr error
	}{
		{"valid echo", echo, nil},
		{"RFC 8200 §8.1: upper-layer length excludes a hop-by-hop header",
			mkIPv6(0, ipv6HopByHop, 64, b4V6, aftrV6, [][]byte{hopByHop(ProtoICMPv6)}, echo[40:]), nil},
		{"RFC 4443 §2.3: a bit flipped in the body", func() []byte {
			b := bytes.Clone(echo)
			b[len(b)-1] ^= 1
			return b
		}(), ErrBadChecksum},
		{"RFC 4443 §2.3: checksum field zero", func() []byte {
			b := bytes.Clone(echo)
			b[42], b[43] = 0, 0
			return b
		}(), ErrBadChecksum},
		{"RFC 4443 §2.3: pseudo-header covers the destination", func() []byte {
			b := bytes.Clone(echo)
			copy(b[24:40], otherV6[:])
			return b
		}(), ErrBadChecksum},
		{"RFC 4443 §2.3: pseudo-header covers the source", func() []byte {
			b := bytes.Clone(echo)
			b[23] ^= 0x10
			return b
		}(), ErrBadChecksum},
		{"shorter than the 8-octet header", func() []byte {
			b := mkIPv6(0, ProtoICMPv6, 64, b4V6, aftrV6, nil, echo[40:47])
			return b
		}(), ErrShort},
		{"not ICMPv6", mkIPv6(0, ProtoUDP, 64, b4V6, aftrV6, nil, echo[40:]), ErrShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p IPv6
			if err := ParseIPv6(tt.pkt, &p); err != nil {
				t.Fatal(err)
			}
			var m ICMPv6
			err := ParseICMPv6(&p, &m)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseICMPv6: err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && (m.Type != ICMPv6EchoRequest || string(m.Body) != "hello") {
				t.Errorf("parsed %+v", m)
			}
		})
	}
}
