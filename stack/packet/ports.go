package packet

import "encoding/binary"

// ICMPv4 types the twins look at.
const (
	ICMPv4EchoReply      = 0
	ICMPv4DstUnreachable = 3
	ICMPv4EchoRequest    = 8
	ICMPv4TimeExceeded   = 11
	ICMPv4ParamProblem   = 12
)

// Flow is what the port-range router needs from an IPv4 packet: its
// protocol and the source and destination "ports" (TCP/UDP ports, or the
// identifier of an ICMP echo in both places).
type Flow struct {
	Proto            uint8
	SrcPort, DstPort uint16
	// ICMPError is set for ICMP errors; then Inner describes the embedded
	// packet (whose source is the host the error is about).
	ICMPError bool
	Inner     struct {
		Proto            uint8
		Src, Dst         [4]byte
		SrcPort, DstPort uint16
	}
}

// IsICMPv4Error reports whether an ICMPv4 type is an error that embeds the
// invoking packet (RFC 792; RFC 5508 §7).
func IsICMPv4Error(typ uint8) bool {
	return typ == ICMPv4DstUnreachable || typ == ICMPv4TimeExceeded || typ == ICMPv4ParamProblem
}

// Ports returns the flow of an IPv4 packet. Non-first fragments have no
// transport header and give ErrFragment; other protocols give ErrNoPorts.
func (p IPv4) Ports() (Flow, error) {
	var f Flow
	f.Proto = p.Protocol()
	if p.FragOffset() != 0 {
		return f, ErrFragment
	}
	l4 := p.Payload()
	switch f.Proto {
	case ProtoTCP, ProtoUDP:
		if len(l4) < 4 {
			return f, ErrShort
		}
		f.SrcPort = binary.BigEndian.Uint16(l4)
		f.DstPort = binary.BigEndian.Uint16(l4[2:])
		return f, nil
	case ProtoICMP:
		if len(l4) < 8 {
			return f, ErrShort
		}
		switch typ := l4[0]; {
		case typ == ICMPv4EchoRequest || typ == ICMPv4EchoReply:
			id := binary.BigEndian.Uint16(l4[4:])
			f.SrcPort, f.DstPort = id, id
			return f, nil
		case IsICMPv4Error(typ):
			f.ICMPError = true
			return f, f.parseInner(l4[8:])
		}
	}
	return f, ErrNoPorts
}

// parseInner reads the embedded (possibly truncated) packet of an ICMP error:
// its IPv4 header and at least the first 4 octets of its transport header,
// which RFC 792 guarantees.
func (f *Flow) parseInner(b []byte) error {
	if len(b) < IPv4HeaderLen || b[0]>>4 != 4 {
		return ErrShort
	}
	ihl := int(b[0]&0xf) * 4
	if ihl < IPv4HeaderLen || len(b) < ihl+4 {
		return ErrShort
	}
	f.Inner.Proto = b[9]
	f.Inner.Src = [4]byte(b[12:16])
	f.Inner.Dst = [4]byte(b[16:20])
	l4 := b[ihl:]
	switch f.Inner.Proto {
	case ProtoTCP, ProtoUDP:
		f.Inner.SrcPort = binary.BigEndian.Uint16(l4)
		f.Inner.DstPort = binary.BigEndian.Uint16(l4[2:])
	case ProtoICMP:
		if len(l4) < 8 {
			return ErrShort
		}
		id := binary.BigEndian.Uint16(l4[4:])
		f.Inner.SrcPort, f.Inner.DstPort = id, id
	default:
		return ErrNoPorts
	}
	return nil
}
