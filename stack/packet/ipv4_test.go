package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func TestParseIPv4(t *testing.T) {
	valid := mkIPv4(0, 64, ProtoTCP, hostV4, peerV4, mkTCP(1024, 80))
	tests := []struct {
		name    string
		in      []byte
		want    []byte // the packet ParseIPv4 returns when err is nil
		wantErr error
	}{
		{"valid", valid, valid, nil},
		{"RFC 791 §3.1: trailing link padding is cut to total length",
			append(bytes.Clone(valid), 0, 0, 0, 0, 0, 0), valid, nil},
		{"RFC 791 §3.1: options, IHL 6",
			mkIPv4Opts(ProtoUDP, hostV4, peerV4, mkUDP(1, 2, nil)),
			mkIPv4Opts(ProtoUDP, hostV4, peerV4, mkUDP(1, 2, nil)), nil},
		{"header only", mkIPv4(0, 1, ProtoTCP, hostV4, peerV4, nil),
			mkIPv4(0, 1, ProtoTCP, hostV4, peerV4, nil), nil},
		{"empty", nil, nil, ErrShort},
		{"shorter than a header", valid[:IPv4HeaderLen-1], nil, ErrShort},
		{"RFC 791 §3.1: version 6", func() []byte {
			b := bytes.Clone(valid)
			b[0] = 0x65
			SetIPv4HeaderChecksum(b)
			return b
		}(), nil, ErrVersion},
		{"RFC 791 §3.1: IHL 4 is below the minimum of 5", func() []byte {
			b := bytes.Clone(valid)
			b[0] = 0x44
			return b
		}(), nil, ErrIPv4Header},
		{"RFC 791 §3.1: IHL 0", func() []byte {
			b := bytes.Clone(valid)
			b[0] = 0x40
			return b
		}(), nil, ErrIPv4Header},
		{"RFC 791 §3.1: total length beyond the slice", func() []byte {
			b := bytes.Clone(valid)
			binary.BigEndian.PutUint16(b[2:], uint16(len(b)+1))
			SetIPv4HeaderChecksum(b)
			return b
		}(), nil, ErrIPv4Header},
		{"RFC 791 §3.1: total length shorter than the header", func() []byte {
			b := bytes.Clone(valid)
			binary.BigEndian.PutUint16(b[2:], 19)
			SetIPv4HeaderChecksum(b)
			return b
		}(), nil, ErrIPv4Header},
		{"RFC 791 §3.1: IHL 15 runs past total length", func() []byte {
			b := bytes.Clone(valid)
			b[0] = 0x4f
			return b
		}(), nil, ErrIPv4Header},
		{"RFC 791 §3.1: bad header checksum", func() []byte {
			b := bytes.Clone(valid)
			b[10] ^= 0x01
			return b
		}(), nil, ErrIPv4Csum},
		{"RFC 791 §3.1: checksum covers options", func() []byte {
			b := mkIPv4Opts(ProtoUDP, hostV4, peerV4, mkUDP(1, 2, nil))
			b[21] = 2
			return b
		}(), nil, ErrIPv4Csum},
		{"RFC 791 §3.1: checksum covers addresses", func() []byte {
			b := bytes.Clone(valid)
			b[19] ^= 0x80
			return b
		}(), nil, ErrIPv4Csum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := bytes.Clone(tt.in)
			p, err := ParseIPv4(in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseIPv4: err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if p != nil {
					t.Errorf("ParseIPv4 returned %d octets with error", len(p))
				}
				return
			}
			if !bytes.Equal(p, tt.want) {
				t.Errorf("ParseIPv4 = %x, want %x", []byte(p), tt.want)
			}
			if len(p) > 0 && &p[0] != &in[0] {
				t.Error("ParseIPv4 copied the packet; it must alias its input")
			}
		})
	}
}

// TestIPv4Accessors compares every getter with gvisor's reading of a header
// gvisor encoded (RFC 791 §3.1 field layout).
func TestIPv4Accessors(t *testing.T) {
	tests := []struct {
		name     string
		f        header.IPv4Fields
		wantFrag bool
	}{
		{"DF, not a fragment", header.IPv4Fields{TOS: 0xb8, ID: 0xbeef, Flags: header.IPv4FlagDontFragment, TTL: 64, Protocol: ProtoTCP}, false},
		{"first fragment (MF)", header.IPv4Fields{TOS: 0x03, ID: 1, Flags: header.IPv4FlagMoreFragments, TTL: 1, Protocol: ProtoUDP}, true},
		{"middle fragment", header.IPv4Fields{ID: 2, Flags: header.IPv4FlagMoreFragments, FragmentOffset: 1480, TTL: 255, Protocol: ProtoUDP}, true},
		{"last fragment", header.IPv4Fields{ID: 3, FragmentOffset: 65528, TTL: 9, Protocol: ProtoICMP}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := make([]byte, 20+12)
			tt.f.TotalLength = uint16(len(b))
			tt.f.SrcAddr = tcpip.AddrFrom4(hostV4)
			tt.f.DstAddr = tcpip.AddrFrom4(peerV4)
			h := header.IPv4(b)
			h.Encode(&tt.f)
			h.SetChecksum(^h.CalculateChecksum())
			p, err := ParseIPv4(b)
			if err != nil {
				t.Fatal(err)
			}
			tos, _ := h.TOS()
			if p.HeaderLen() != 20 || p.TOS() != tos || p.TotalLen() != len(b) ||
				p.ID() != h.ID() || p.TTL() != h.TTL() || p.Protocol() != h.Protocol() {
				t.Errorf("fields: ihl %d tos %#x len %d id %#x ttl %d proto %d; gvisor reads tos %#x id %#x ttl %d proto %d",
					p.HeaderLen(), p.TOS(), p.TotalLen(), p.ID(), p.TTL(), p.Protocol(), tos, h.ID(), h.TTL(), h.Protocol())
			}
			if p.DF() != (h.Flags()&header.IPv4FlagDontFragment != 0) || p.MF() != h.More() {
				t.Errorf("DF %v MF %v, gvisor flags %#x", p.DF(), p.MF(), h.Flags())
			}
			if p.FragOffset()*8 != int(h.FragmentOffset()) || p.IsFragment() != tt.wantFrag {
				t.Errorf("FragOffset %d (x8 = %d), gvisor %d; IsFragment %v, want %v",
					p.FragOffset(), p.FragOffset()*8, h.FragmentOffset(), p.IsFragment(), tt.wantFrag)
			}
			if p.Src() != hostV4 || p.Dst() != peerV4 ||
				p.SrcAddr() != netip.AddrFrom4(hostV4) || p.DstAddr() != netip.AddrFrom4(peerV4) {
				t.Errorf("addresses %v -> %v", p.SrcAddr(), p.DstAddr())
			}
			if len(p.Payload()) != 12 || &p.Payload()[0] != &b[20] {
				t.Errorf("Payload is %d octets, want the 12 after the header", len(p.Payload()))
			}
		})
	}
}

// TestPutIPv4Header checks the builder byte for byte against gvisor's
// encoder (RFC 791 §3.1).
func TestPutIPv4Header(t *testing.T) {
	for _, df := range []bool{false, true} {
		got := make([]byte, 20)
		for i := range got {
			got[i] = 0xaa // the builder must overwrite every octet
		}
		PutIPv4Header(got, 0x2e, 1500, 0x5eed, df, 63, ProtoUDP, b4WKA, aftrWKA)
		want := make([]byte, 20)
		f := header.IPv4Fields{TOS: 0x2e, TotalLength: 1500, ID: 0x5eed, TTL: 63, Protocol: ProtoUDP,
			SrcAddr: tcpip.AddrFrom4(b4WKA), DstAddr: tcpip.AddrFrom4(aftrWKA)}
		if df {
			f.Flags = header.IPv4FlagDontFragment
		}
		header.IPv4(want).Encode(&f)
		header.IPv4(want).SetChecksum(^header.IPv4(want).CalculateChecksum())
		if !bytes.Equal(got, want) {
			t.Errorf("df=%v: PutIPv4Header = %x, gvisor = %x", df, got, want)
		}
	}
}

func TestSetIPv4HeaderChecksum(t *testing.T) {
	for _, b := range [][]byte{
		mkIPv4(0, 64, ProtoTCP, hostV4, peerV4, nil),
		mkIPv4Opts(ProtoUDP, hostV4, peerV4, nil),
	} {
		b[10], b[11] = 0x12, 0x34 // stale
		b[8] = 17
		SetIPv4HeaderChecksum(b)
		checkIPv4Header(t, b)
	}
}

// TestDecTTL: RFC 1812 §5.3.1 (a router decrements the TTL and discards a
// packet whose TTL is 0 or 1 instead of forwarding it), with the checksum
// updated incrementally per RFC 1624 and checked here from scratch.
func TestDecTTL(t *testing.T) {
	tests := []struct {
		name    string
		pkt     []byte
		wantErr error
	}{
		{"TTL 0", mkIPv4(0, 0, ProtoTCP, hostV4, peerV4, mkTCP(1, 2)), ErrTTLExceeded},
		{"TTL 1", mkIPv4(0, 1, ProtoTCP, hostV4, peerV4, mkTCP(1, 2)), ErrTTLExceeded},
		{"TTL 2", mkIPv4(0, 2, ProtoTCP, hostV4, peerV4, mkTCP(1, 2)), nil},
		{"TTL 64", mkIPv4(0xb8, 64, ProtoUDP, hostV4, peerV4, mkUDP(1, 2, nil)), nil},
		{"TTL 255", mkIPv4(0, 255, ProtoICMP, routerV4, hostV4, nil), nil},
		{"TTL 2 with options", withTTL(mkIPv4Opts(ProtoUDP, hostV4, peerV4, nil), 2), nil},
		{"TTL 2, protocol 255, addresses ending 255", mkIPv4(0, 2, 0xff, [4]byte{192, 0, 2, 255}, [4]byte{203, 0, 113, 255}, nil), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := IPv4(bytes.Clone(tt.pkt))
			err := p.DecTTL()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("DecTTL: err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !bytes.Equal(p, tt.pkt) {
					t.Errorf("DecTTL changed the packet on error: %x, was %x", []byte(p), tt.pkt)
				}
				return
			}
			want := withTTL(bytes.Clone(tt.pkt), tt.pkt[8]-1)
			if !bytes.Equal(p, want) {
				t.Errorf("after DecTTL %x, want (full recompute) %x", []byte(p), want)
			}
			checkIPv4Header(t, p)
		})
	}
}

// withTTL sets the TTL and recomputes the header checksum from scratch.
func withTTL(b []byte, ttl uint8) []byte {
	b[8] = ttl
	SetIPv4HeaderChecksum(b)
	return b
}

// TestDecTTLToZero walks a packet from 255 to 1: the checksum stays valid
// at every step and the last step is refused.
func TestDecTTLToZero(t *testing.T) {
	p := IPv4(mkIPv4(0, 255, ProtoUDP, hostV4, peerV4, mkUDP(1, 2, nil)))
	for ttl := 254; ttl >= 1; ttl-- {
		if err := p.DecTTL(); err != nil {
			t.Fatalf("TTL %d: %v", ttl+1, err)
		}
		if p.TTL() != uint8(ttl) {
			t.Fatalf("TTL = %d, want %d", p.TTL(), ttl)
		}
		checkIPv4Header(t, p)
	}
	if err := p.DecTTL(); !errors.Is(err, ErrTTLExceeded) {
		t.Fatalf("DecTTL at TTL 1: err = %v, want ErrTTLExceeded", err)
	}
}

// TestSetTOS: the DS field and ECN octet (RFC 2474 §3, RFC 3168 §5) can be
// rewritten without breaking the header checksum (RFC 1624).
func TestSetTOS(t *testing.T) {
	for _, from := range []uint8{0, 0x03, 0xb8, 0xff} {
		for _, to := range []uint8{0, 0x01, 0x03, 0x2e, 0xb8, 0xfc, 0xff} {
			orig := mkIPv4(from, 64, ProtoTCP, hostV4, peerV4, mkTCP(443, 50000))
			p := IPv4(bytes.Clone(orig))
			p.SetTOS(to)
			want := bytes.Clone(orig)
			want[1] = to
			SetIPv4HeaderChecksum(want)
			if !bytes.Equal(p, want) {
				t.Errorf("SetTOS(%#02x) from %#02x: %x, want %x", to, from, []byte(p), want)
			}
			checkIPv4Header(t, p)
			if _, err := ParseIPv4(p); err != nil {
				t.Errorf("SetTOS(%#02x) from %#02x: ParseIPv4: %v", to, from, err)
			}
		}
	}
}

// TestUpdateChecksum16 checks the worked example of RFC 1624 §4, where
// eqn. 2 of RFC 1141 gives 0xffff but recomputation (and eqn. 3) gives 0.
func TestUpdateChecksum16(t *testing.T) {
	tests := []struct {
		name                 string
		csum, old, new, want uint16
	}{
		{"RFC 1624 §4 example", 0xdd2f, 0x5555, 0x3285, 0x0000},
		{"no change", 0x1234, 0xabcd, 0xabcd, 0x1234},
		{"change and change back", UpdateChecksum16(0x1234, 0xabcd, 0x0001), 0x0001, 0xabcd, 0x1234},
	}
	for _, tt := range tests {
		if got := UpdateChecksum16(tt.csum, tt.old, tt.new); got != tt.want {
			t.Errorf("%s: UpdateChecksum16(%#04x, %#04x, %#04x) = %#04x, want %#04x",
				tt.name, tt.csum, tt.old, tt.new, got, tt.want)
		}
	}
}

// TestUpdateChecksum16Property: on random data, changing any 16-bit word and
// updating the checksum incrementally (RFC 1624 eqn. 3) gives exactly the
// checksum recomputed from scratch (RFC 1071).
func TestUpdateChecksum16Property(t *testing.T) {
	rng := rand.New(rand.NewPCG(1624, 1071))
	n := 200000
	if testing.Short() {
		n = 10000
	}
	for i := range n {
		words := 1 + rng.IntN(32)
		data := make([]byte, 2*words)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		if i%4 == 0 { // stress the ends of the range: many 0x0000 and 0xffff words
			for j := 0; j < len(data); j += 2 {
				if v := rng.IntN(3); v < 2 {
					data[j], data[j+1] = byte(0xff*v), byte(0xff*v)
				}
			}
		}
		if allZero(data) {
			continue // the all-zero sum is +0, the one case eqn. 3 writes as -0
		}
		csum := ^onesSum(data)
		w := 2 * rng.IntN(words)
		old := binary.BigEndian.Uint16(data[w:])
		nv := uint16(rng.Uint32())
		if rng.IntN(8) == 0 {
			nv = ^old
		}
		binary.BigEndian.PutUint16(data[w:], nv)
		if allZero(data) {
			continue
		}
		want := ^onesSum(data)
		if got := UpdateChecksum16(csum, old, nv); got != want {
			t.Fatalf("data %x word %d %#04x -> %#04x: UpdateChecksum16(%#04x) = %#04x, full recompute %#04x",
				data, w/2, old, nv, csum, got, want)
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
