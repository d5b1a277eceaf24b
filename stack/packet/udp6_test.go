package packet

import (
	"bytes"
	"errors"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// UDP6 builds what gVisor accepts, and ParseUDP6 reads it back; a bad or
// zero checksum (RFC 8200 §8.1), a short datagram or another protocol is
// refused.
func TestUDP6RoundTrip(t *testing.T) {
	src := [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}
	dst := [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0xff, 15: 2}
	b := UDP6(src, dst, 5351, 40000, 64, []byte("pcp answer"))
	ip := header.IPv6(b)
	u := header.UDP(ip.Payload())
	if !u.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress(), checksum.Checksum(u.Payload(), 0)) {
		t.Fatalf("gvisor: UDP checksum %#04x invalid", u.Checksum())
	}
	var p IPv6
	if err := ParseIPv6(b, &p); err != nil {
		t.Fatal(err)
	}
	var got UDP
	if err := ParseUDP6(&p, &got); err != nil || got.SrcPort != 5351 || got.DstPort != 40000 || !bytes.Equal(got.Data, []byte("pcp answer")) {
		t.Fatalf("ParseUDP6 = %+v, %v", got, err)
	}
	for _, tt := range []struct {
		name string
		mod  func([]byte)
		want error
	}{
		{"bad checksum", func(b []byte) { b[IPv6HeaderLen+8] ^= 1 }, ErrBadChecksum},
		{"zero checksum", func(b []byte) { b[IPv6HeaderLen+6], b[IPv6HeaderLen+7] = 0, 0 }, ErrBadChecksum},
		{"UDP length past the packet", func(b []byte) { b[IPv6HeaderLen+4] = 0xff }, ErrShort},
		{"UDP length under 8", func(b []byte) { b[IPv6HeaderLen+4], b[IPv6HeaderLen+5] = 0, 7 }, ErrShort},
	} {
		c := bytes.Clone(b)
		tt.mod(c)
		var p IPv6
		if err := ParseIPv6(c, &p); err != nil {
			t.Fatal(err)
		}
		if err := ParseUDP6(&p, &got); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	p.NextHeader = ProtoICMPv6
	if err := ParseUDP6(&p, &got); !errors.Is(err, ErrNoPorts) {
		t.Errorf("ICMPv6: %v, want ErrNoPorts", err)
	}
}
