package pcp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Parse decodes one PCP message, request or response. It never reads past
// b, never panics, and does not keep b (the Message owns a copy).
//
// Parse is strict about what RFC 6887 §8.2 and §7.3 make an error: length
// under 24, over 1100 or not a multiple of 4; a version other than 2; a
// request or success response too short for its opcode; an option that runs
// past the message; a known option of the wrong length; a single-instance
// option repeated. Each error wraps a sentinel that ResultOf maps to the
// result code a server answers with.
//
// Two things are not errors, so that every response a server may send
// still decodes:
//   - an unknown opcode: its payload is kept in Message.Payload;
//   - in an error response, which is a copy of the request (§7.3), missing
//     opcode data and a broken option structure: the undecodable octets go
//     to Message.Payload, repeated options and wrong lengths are kept.
//
// Reserved fields are ignored (§7.1, §7.2, §11.1).
func Parse(b []byte) (*Message, error) {
	switch {
	case len(b) < HeaderLen:
		return nil, fmt.Errorf("%w: %d octets", ErrShort, len(b))
	case len(b) > MaxMessageLen:
		return nil, fmt.Errorf("%w: %d octets", ErrTooLong, len(b))
	case len(b)%4 != 0:
		return nil, fmt.Errorf("%w: %d octets", ErrNotAligned, len(b))
	case b[0] != Version:
		return nil, fmt.Errorf("%w: %d", ErrVersion, b[0])
	}
	m := new(Message)
	// The Message's slices point into this copy.
	if err := decode(m, bytes.Clone(b), nil); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeStore is storage decode can fill instead of allocating: the
// opcode data and the first options (Server.Handle pools it).
type decodeStore struct {
	md   MapData
	pd   PeerData
	opts [8]Option
}

// decode is Parse after its length and version checks, into m; m's slices
// point into b. With st, the opcode data and options go into st (more
// than its options still append).
func decode(m *Message, b []byte, st *decodeStore) error {
	*m = Message{
		Version:  b[0],
		Response: b[1]&0x80 != 0,
		Opcode:   Opcode(b[1] & 0x7f),
		Lifetime: binary.BigEndian.Uint32(b[4:]),
	}
	if m.Response {
		m.Result = ResultCode(b[3])
		m.Epoch = binary.BigEndian.Uint32(b[8:])
	} else {
		m.ClientIP = getAddr(b[8:24])
	}
	rest := b[HeaderLen:]
	if !m.Opcode.Known() {
		m.Payload = nonEmpty(rest)
		return nil
	}
	lenient := m.Response && m.Result != Success
	need := m.Opcode.dataLen()
	if len(rest) < need {
		if !lenient {
			return fmt.Errorf("%w: %v needs %d octets, has %d", ErrShortOpcode, m.Opcode, HeaderLen+need, len(b))
		}
		m.Payload = nonEmpty(rest)
		return nil
	}
	var opts []Option
	if need > 0 {
		if st != nil {
			m.Map = &st.md
		} else {
			m.Map = new(MapData)
		}
		decodeMapData(m.Map, rest)
	}
	if m.Opcode == OpPeer {
		if st != nil {
			m.Peer = &st.pd
		} else {
			m.Peer = new(PeerData)
		}
		*m.Peer = PeerData{
			RemotePort: binary.BigEndian.Uint16(rest[36:]),
			RemoteIP:   getAddr(rest[40:56]),
		}
	}
	if st != nil {
		opts = st.opts[:0]
	}
	opts, tail, err := parseOptions(opts, rest[need:], lenient)
	if err != nil {
		return err
	}
	if len(opts) > 0 {
		m.Options = opts
	}
	m.Payload = nonEmpty(tail)
	return nil
}

func decodeMapData(d *MapData, b []byte) {
	*d = MapData{
		Protocol:     b[12],
		InternalPort: binary.BigEndian.Uint16(b[16:]),
		ExternalPort: binary.BigEndian.Uint16(b[18:]),
		ExternalIP:   getAddr(b[20:36]),
	}
	copy(d.Nonce[:], b[:12])
}

// parseOptions walks the option list (RFC 6887 §7.3), appending to opts.
// When lenient, a framing error ends the walk and the rest is returned as
// tail, and lengths and repeats are not checked.
func parseOptions(opts []Option, b []byte, lenient bool) (_ []Option, tail []byte, err error) {
	var seen [256]bool
	for off := 0; off < len(b); {
		if len(b)-off < 4 {
			if lenient {
				return opts, b[off:], nil
			}
			return nil, nil, fmt.Errorf("%w: %d octets left at offset %d", ErrOptionFraming, len(b)-off, HeaderLen+off)
		}
		code := OptionCode(b[off])
		n := int(binary.BigEndian.Uint16(b[off+2:]))
		padded := (n + 3) &^ 3
		if padded > len(b)-off-4 {
			if lenient {
				return opts, b[off:], nil
			}
			return nil, nil, fmt.Errorf("%w: %v length %d at offset %d", ErrOptionFraming, code, n, HeaderLen+off)
		}
		data := b[off+4 : off+4+n : off+4+n]
		off += 4 + padded
		if !lenient {
			if want, ok := code.fixedLen(); ok && n != want {
				return nil, nil, fmt.Errorf("%w: %v length %d, want %d", ErrOptionLength, code, n, want)
			}
			if code.singleInstance() && seen[code] {
				return nil, nil, fmt.Errorf("%w: %v", ErrOptionRepeat, code)
			}
			seen[code] = true
		}
		opts = append(opts, Option{Code: code, Data: data})
	}
	return opts, nil, nil
}

// getAddr decodes a 128-bit address field; IPv4-mapped becomes 4-byte
// (netip's Unmap checks all 96 prefix bits, as PROTOCOL.md §1.1 asks).
func getAddr(b []byte) netip.Addr {
	return netip.AddrFrom16([16]byte(b[:16])).Unmap()
}

func nonEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
