package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// checkUDP4 fails t unless the UDP checksum of the IPv4 packet b verifies
// both by gvisor and from scratch (RFC 768).
func checkUDP4(t *testing.T, b []byte) {
	t.Helper()
	ip := header.IPv4(b)
	u := header.UDP(ip.Payload())
	if !u.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress(), checksum.Checksum(u.Payload(), 0)) {
		t.Errorf("gvisor: UDP checksum %#04x invalid", u.Checksum())
	}
	if s := onesSum(pseudoHdr4([4]byte(b[12:16]), [4]byte(b[16:20]), ProtoUDP, len(u)), u); s != 0xffff {
		t.Errorf("UDP datagram sums to %#04x, want 0xffff", s)
	}
}

func TestAppendUDP4(t *testing.T) {
	for _, tt := range []struct {
		name     string
		prefix   []byte
		headroom int
		data     []byte
	}{
		{"no headroom", nil, 0, []byte("pcp")},
		{"headroom for the softwire's IPv6 header", nil, IPv6HeaderLen, make([]byte, 60)},
		{"appended after existing bytes", []byte("keep"), IPv6HeaderLen, []byte{1}},
		{"empty datagram", nil, 0, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Junk in the spare capacity must not leak into the headroom.
			dst := bytes.Repeat([]byte{0xaa}, 256)[:len(tt.prefix)]
			copy(dst, tt.prefix)
			out := AppendUDP4(dst, tt.headroom, aftrWKA, b4WKA, 5351, 5350, 64, tt.data)
			start := len(tt.prefix) + tt.headroom
			if len(out) != start+28+len(tt.data) {
				t.Fatalf("len = %d", len(out))
			}
			if !bytes.Equal(out[:len(tt.prefix)], tt.prefix) {
				t.Error("prefix changed")
			}
			if !allZero(out[len(tt.prefix):start]) {
				t.Errorf("headroom not zero: %x", out[len(tt.prefix):start])
			}
			if tt.headroom > 0 {
				enc := Encapsulate(out, start, aftrV6, b4V6, 64)
				if &enc[0] != &out[len(tt.prefix)] {
					t.Error("the headroom left is not usable for Encapsulate in place")
				}
			}
			b := out[start:]
			checkIPv4Header(t, b)
			checkUDP4(t, b)
			p, err := ParseIPv4(b)
			if err != nil {
				t.Fatal(err)
			}
			var u UDP
			if err := ParseUDP4(p, &u); err != nil {
				t.Fatal(err)
			}
			if u.SrcPort != 5351 || u.DstPort != 5350 || !bytes.Equal(u.Data, tt.data) ||
				p.Src() != aftrWKA || p.Dst() != b4WKA || p.TTL() != 64 {
				t.Errorf("parsed %+v from %x", u, b)
			}
		})
	}
}

// TestAppendUDP4ZeroChecksum: RFC 768: "If the computed checksum is zero, it
// is transmitted as all ones". Two data octets are chosen so the one's
// complement sum of everything else plus them is 0xffff, whose complement,
// the computed checksum, is 0.
func TestAppendUDP4ZeroChecksum(t *testing.T) {
	probe := AppendUDP4(nil, 0, hostV4, peerV4, 1234, 5678, 64, []byte{0, 0})
	u := probe[20:]
	binary.BigEndian.PutUint16(u[6:], 0)
	s := onesSum(pseudoHdr4(hostV4, peerV4, ProtoUDP, len(u)), u)
	data := binary.BigEndian.AppendUint16(nil, ^s) // s + ^s = 0xffff
	// Check the premise: the computed checksum of this datagram is 0.
	binary.BigEndian.PutUint16(u[8:], ^s)
	if c := ^onesSum(pseudoHdr4(hostV4, peerV4, ProtoUDP, len(u)), u); c != 0 {
		t.Fatalf("premise: computed checksum %#04x, want 0", c)
	}

	b := AppendUDP4(nil, 0, hostV4, peerV4, 1234, 5678, 64, data)
	if got := binary.BigEndian.Uint16(b[26:]); got != 0xffff {
		t.Errorf("RFC 768: checksum field %#04x, want 0xffff", got)
	}
	checkUDP4(t, b)
	p, err := ParseIPv4(b)
	if err != nil {
		t.Fatal(err)
	}
	var d UDP
	if err := ParseUDP4(p, &d); err != nil {
		t.Errorf("ParseUDP4 rejects the all-ones checksum: %v", err)
	}
}

func TestParseUDP4(t *testing.T) {
	good := AppendUDP4(nil, 0, peerV4, hostV4, 53, 40000, 64, []byte("answer"))
	mod := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		SetIPv4HeaderChecksum(b)
		return b
	}
	tests := []struct {
		name     string
		pkt      []byte
		wantErr  error
		wantData string
	}{
		{"valid", good, nil, "answer"},
		{"RFC 768: zero checksum means none was computed", mod(func(b []byte) {
			b[26], b[27] = 0, 0
			b[30] ^= 0xff // and the data no longer matches any checksum
		}), nil, "an\x8cwer"},
		{"RFC 768: bad checksum", mod(func(b []byte) { b[28] ^= 1 }), ErrBadChecksum, ""},
		{"RFC 768: pseudo-header covers the addresses", mod(func(b []byte) { b[19] ^= 1 }), ErrBadChecksum, ""},
		{"RFC 768: UDP length beyond the IP payload", mod(func(b []byte) {
			binary.BigEndian.PutUint16(b[24:], uint16(len(b)-20+1))
		}), ErrShort, ""},
		{"RFC 768: UDP length below the header", mod(func(b []byte) {
			binary.BigEndian.PutUint16(b[24:], 7)
		}), ErrShort, ""},
		{"RFC 768: UDP length shorter than the IP payload cuts the data", func() []byte {
			b := AppendUDP4(nil, 0, peerV4, hostV4, 53, 40000, 64, []byte("ans"))
			b = append(b, 0, 0)
			binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
			SetIPv4HeaderChecksum(b)
			return b
		}(), nil, "ans"},
		{"payload shorter than a UDP header", mkIPv4(0, 64, ProtoUDP, peerV4, hostV4, make([]byte, 7)), ErrShort, ""},
		{"not UDP", mkIPv4(0, 64, ProtoTCP, peerV4, hostV4, mkTCP(1, 2)), ErrNoPorts, ""},
		{"RFC 791 §2.3: first fragment cannot be checked alone", withFrag(bytes.Clone(good), true, 0), ErrNoPorts, ""},
		{"RFC 791 §2.3: non-first fragment", withFrag(bytes.Clone(good), false, 1), ErrNoPorts, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParseIPv4(tt.pkt)
			if err != nil {
				t.Fatal(err)
			}
			var u UDP
			err = ParseUDP4(p, &u)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseUDP4: err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && (u.SrcPort != 53 || u.DstPort != 40000 || string(u.Data) != tt.wantData) {
				t.Errorf("parsed %d -> %d %q", u.SrcPort, u.DstPort, u.Data)
			}
		})
	}
}
