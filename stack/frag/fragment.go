package frag

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/lw4o6/lw4o6/stack/packet"
)

// Errors of the fragmenters.
var (
	// ErrDF: the IPv4 packet is larger than the MTU and Don't Fragment is
	// set; the caller answers with ICMPv4 3/4 (RFC 791 §3.2, RFC 2473 §7.2).
	ErrDF = errors.New("frag: packet too big and DF set")
	// ErrMTU: the MTU leaves no room for 8 octets of payload beside the
	// headers.
	ErrMTU = errors.New("frag: MTU too small to fragment")
)

// IPv6 extension header numbers (RFC 8200 §4).
const (
	nhHopByHop = 0
	nhRouting  = 43
	nhFragment = 44
	nhDestOpts = 60
)

// fragHeaderLen is the length of the IPv6 Fragment header (RFC 8200 §4.5).
const fragHeaderLen = 8

// FragmentIPv4 splits the IPv4 packet pkt into fragments of at most mtu
// octets (RFC 791 §3.2), all carrying pkt's ID. See the package comment for
// the splitting rule and what is returned when pkt fits.
func FragmentIPv4(pkt []byte, mtu int) ([][]byte, error) {
	return fragment4(pkt, mtu, 0, false)
}

// FragmentIPv4ID is FragmentIPv4 with the fragments carrying id instead of
// pkt's own ID, as Snabb lwAFTR numbers the fragments it makes. A packet
// that fits is returned untouched.
func FragmentIPv4ID(pkt []byte, mtu int, id uint16) ([][]byte, error) {
	return fragment4(pkt, mtu, id, true)
}

func fragment4(pkt []byte, mtu int, id uint16, setID bool) ([][]byte, error) {
	p, err := packet.ParseIPv4(pkt)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if len(p) <= mtu {
		return [][]byte{p}, nil
	}
	if p.DF() {
		return nil, ErrDF
	}
	hl0 := p.HeaderLen()
	// Later fragments carry only the options whose copied flag is set
	// (RFC 791 §3.1, "Options"; §3.2).
	var optsN [40]byte
	nOpts, err := copiedOptions(optsN[:], p[packet.IPv4HeaderLen:hl0])
	if err != nil {
		return nil, err
	}
	hlN := packet.IPv4HeaderLen + (nOpts+3)&^3
	c0, cN := (mtu-hl0)&^7, (mtu-hlN)&^7
	if c0 < 8 || cN < 8 {
		return nil, ErrMTU
	}
	data := p[hl0:]
	n := 1 + (len(data)-c0+cN-1)/cN
	buf := make([]byte, hl0+c0+(n-1)*hlN+len(data)-c0)
	out := make([][]byte, 0, n)
	origOff, origMF := p.FragOffset()*8, p.MF()
	for pos, i := 0, 0; i < n; i++ {
		hl, c := hlN, cN
		if i == 0 {
			hl, c = hl0, c0
		}
		c = min(c, len(data)-pos)
		f := buf[:hl+c]
		buf = buf[hl+c:]
		if i == 0 {
			copy(f, p[:hl0])
		} else {
			copy(f, p[:packet.IPv4HeaderLen])
			copy(f[packet.IPv4HeaderLen:], optsN[:hlN-packet.IPv4HeaderLen]) // padding: zeros = End of Option List
			f[0] = 0x40 | byte(hlN/4)
		}
		copy(f[hl:], data[pos:pos+c])
		binary.BigEndian.PutUint16(f[2:], uint16(hl+c))
		if setID {
			binary.BigEndian.PutUint16(f[4:], id)
		}
		ff := uint16((origOff + pos) / 8)
		if i < n-1 || origMF {
			ff |= 0x2000 // MF; DF is clear, the reserved bit is cleared
		}
		binary.BigEndian.PutUint16(f[6:], ff)
		packet.SetIPv4HeaderChecksum(f)
		out = append(out, f)
		pos += c
	}
	return out, nil
}

// copiedOptions writes into dst the IPv4 options of opts whose copied flag
// is set and returns their length (RFC 791 §3.1: type octet bit 0 "copied";
// 0 = End of Option List and 1 = No Operation are single octets).
func copiedOptions(dst, opts []byte) (int, error) {
	n := 0
	for i := 0; i < len(opts); {
		t := opts[i]
		if t == 0 {
			break
		}
		l := 1
		if t != 1 {
			if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
				return 0, fmt.Errorf("%w: IPv4 option %d", ErrMalformed, t)
			}
			l = int(opts[i+1])
		}
		if t&0x80 != 0 {
			n += copy(dst[n:], opts[i:i+l])
		}
		i += l
	}
	return n, nil
}

// FragmentIPv6 splits the IPv6 packet pkt into fragments of at most mtu
// octets with a Fragment header carrying id (RFC 8200 §4.5). See the
// package comment for the splitting rule and what is returned when pkt
// fits.
func FragmentIPv6(pkt []byte, mtu int, id uint32) ([][]byte, error) {
	b, unfrag, chain, nhOff, err := unfragmentable(pkt)
	if err != nil {
		return nil, err
	}
	if len(b) <= mtu {
		return [][]byte{b}, nil
	}
	// The first fragment holds the whole extension header chain (RFC 8200
	// §4.5, RFC 7112).
	c := (mtu - unfrag - fragHeaderLen) &^ 7
	if c < 8 || c < chain-unfrag {
		return nil, ErrMTU
	}
	data := b[unfrag:]
	n := (len(data) + c - 1) / c
	buf := make([]byte, n*(unfrag+fragHeaderLen)+len(data))
	out := make([][]byte, 0, n)
	nh := b[nhOff]
	for pos := 0; pos < len(data); pos += c {
		c = min(c, len(data)-pos)
		f := buf[:unfrag+fragHeaderLen+c]
		buf = buf[len(f):]
		copy(f, b[:unfrag])
		f[nhOff] = nhFragment
		binary.BigEndian.PutUint16(f[4:], uint16(len(f)-packet.IPv6HeaderLen))
		h := f[unfrag:]
		h[0], h[1] = nh, 0
		off := uint16(pos) // a multiple of 8: the offset field in place
		if pos+c < len(data) {
			off |= 1 // M
		}
		binary.BigEndian.PutUint16(h[2:], off)
		binary.BigEndian.PutUint32(h[4:], id)
		copy(h[fragHeaderLen:], data[pos:pos+c])
		out = append(out, f)
	}
	return out, nil
}

// unfragmentable checks pkt's IPv6 header, cuts it to its payload length and
// finds the end of the unfragmentable part (RFC 8200 §4.5: the header, a
// Hop-by-Hop header, and the headers up to and including the last Routing
// header), the end of the extension header chain, and the offset of the
// Next Header octet that names the first fragmentable header.
func unfragmentable(pkt []byte) (b []byte, end, chain, nhOff int, err error) {
	if len(pkt) < packet.IPv6HeaderLen || pkt[0]>>4 != 6 {
		return nil, 0, 0, 0, fmt.Errorf("%w: not an IPv6 header", ErrMalformed)
	}
	pl := int(binary.BigEndian.Uint16(pkt[4:]))
	if pl == 0 || packet.IPv6HeaderLen+pl > len(pkt) {
		return nil, 0, 0, 0, fmt.Errorf("%w: IPv6 payload length", ErrMalformed)
	}
	b = pkt[:packet.IPv6HeaderLen+pl]
	end, nhOff = packet.IPv6HeaderLen, 6
	for pos, nh := packet.IPv6HeaderLen, b[6]; ; {
		switch nh {
		case nhHopByHop, nhRouting, nhDestOpts:
			n := extLen(b[pos:])
			if n == 0 {
				return nil, 0, 0, 0, fmt.Errorf("%w: IPv6 extension header", ErrMalformed)
			}
			if nh != nhDestOpts {
				end, nhOff = pos+n, pos
			}
			nh, pos = b[pos], pos+n
		case nhFragment:
			return nil, 0, 0, 0, fmt.Errorf("%w: already a fragment", ErrMalformed)
		default:
			return b, end, pos, nhOff, nil
		}
	}
}
