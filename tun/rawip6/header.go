package rawip6

import (
	"encoding/binary"
	"fmt"

	"github.com/lw4o6/lw4o6/tun"
)

const ipv6HeaderLen = 40

// putHeader writes the fixed IPv6 header (RFC 8200 §3) into b[:40], with
// a zero flow label.
func putHeader(b []byte, tclass, nextHeader, hopLimit uint8, payloadLen int, src, dst *[16]byte) {
	_ = b[ipv6HeaderLen-1]
	b[0] = 0x60 | tclass>>4
	b[1] = tclass << 4
	b[2], b[3] = 0, 0
	binary.BigEndian.PutUint16(b[4:], uint16(payloadLen))
	b[6], b[7] = nextHeader, hopLimit
	copy(b[8:24], src[:])
	copy(b[24:40], dst[:])
}

// checkPacket reports whether p is an IPv6 packet Write can send: version
// 6 and a Payload Length that accounts for exactly its size (jumbograms,
// RFC 2675, are not sent).
func checkPacket(p []byte) error {
	if len(p) < ipv6HeaderLen {
		return fmt.Errorf("%d octets: %w", len(p), tun.ErrMalformed)
	}
	if p[0]>>4 != 6 {
		return fmt.Errorf("IP version %d: %w", p[0]>>4, tun.ErrMalformed)
	}
	if pl := int(binary.BigEndian.Uint16(p[4:])); pl != len(p)-ipv6HeaderLen {
		return fmt.Errorf("payload length %d in %d octets: %w", pl, len(p), tun.ErrMalformed)
	}
	return nil
}

// trafficClass returns the Traffic Class of an IPv6 header.
func trafficClass(p []byte) uint8 { return p[0]<<4 | p[1]>>4 }
