package pcp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Marshal encodes m; see AppendMessage.
func Marshal(m *Message) ([]byte, error) { return AppendMessage(nil, m) }

// AppendMessage appends the wire form of m to b: the request header
// (§7.1) or the response header (§7.2) according to m.Response, the
// opcode data, the options padded to 4 octets (§7.3), then m.Payload.
// Reserved fields are written as 0, addresses IPv4-mapped (§5).
//
// MAP and PEER need m.Map (and m.Peer) except in an error response, which
// may lack them (see Parse). The result must be a multiple of 4 octets and
// at most 1100 octets, else ErrNotAligned or ErrTooLong. On error b is
// returned unchanged.
func AppendMessage(b []byte, m *Message) ([]byte, error) {
	orig, start := b, len(b)
	v := m.Version
	if v == 0 {
		v = Version
	}
	op := byte(m.Opcode & 0x7f)
	var hdr [HeaderLen]byte
	hdr[0] = v
	hdr[1] = op
	binary.BigEndian.PutUint32(hdr[4:], m.Lifetime)
	if m.Response {
		hdr[1] |= 0x80
		hdr[3] = byte(m.Result)
		binary.BigEndian.PutUint32(hdr[8:], m.Epoch)
	} else {
		putAddr(hdr[8:], m.ClientIP)
	}
	b = append(b, hdr[:]...)

	if m.Opcode == OpMap || m.Opcode == OpPeer {
		errResp := m.Response && m.Result != Success
		switch {
		case m.Map != nil && (m.Opcode == OpMap || m.Peer != nil):
			b = appendMapData(b, m.Map)
			if m.Opcode == OpPeer {
				b = appendPeerData(b, m.Peer)
			}
		case !errResp || m.Map != nil || m.Peer != nil:
			return orig, fmt.Errorf("%w: %v", ErrMissingData, m.Opcode)
		}
	}
	for _, o := range m.Options {
		if len(o.Data) > 0xffff {
			return orig, fmt.Errorf("%w: %v data of %d octets", ErrTooLong, o.Code, len(o.Data))
		}
		b = appendOption(b, o)
	}
	b = append(b, m.Payload...)
	switch n := len(b) - start; {
	case n > MaxMessageLen:
		return orig, fmt.Errorf("%w: %d octets", ErrTooLong, n)
	case n%4 != 0:
		return orig, fmt.Errorf("%w: %d octets", ErrNotAligned, n)
	}
	return b, nil
}

func appendMapData(b []byte, d *MapData) []byte {
	var w [MapDataLen]byte
	copy(w[:], d.Nonce[:])
	w[12] = d.Protocol
	binary.BigEndian.PutUint16(w[16:], d.InternalPort)
	binary.BigEndian.PutUint16(w[18:], d.ExternalPort)
	putAddr(w[20:], d.ExternalIP)
	return append(b, w[:]...)
}

func appendPeerData(b []byte, d *PeerData) []byte {
	var w [PeerDataLen - MapDataLen]byte
	binary.BigEndian.PutUint16(w[0:], d.RemotePort)
	putAddr(w[4:], d.RemoteIP)
	return append(b, w[:]...)
}

func appendOption(b []byte, o Option) []byte {
	n := len(o.Data)
	b = append(b, byte(o.Code), 0, byte(n>>8), byte(n))
	b = append(b, o.Data...)
	var zero [3]byte
	return append(b, zero[:(4-n%4)%4]...)
}

// putAddr writes a into the 16-octet field b: IPv4 as IPv4-mapped
// (RFC 6887 §5), the zero Addr as ::. Zones are dropped.
func putAddr(b []byte, a netip.Addr) {
	if !a.IsValid() {
		clear(b[:16])
		return
	}
	a16 := a.As16() // IPv4 comes out as ::ffff:a.b.c.d
	copy(b[:16], a16[:])
}
