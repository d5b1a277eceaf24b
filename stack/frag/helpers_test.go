package frag

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/lw4o6/lw4o6/stack/packet"
)

// Documentation addresses only (RFC 5737, RFC 3849).
var (
	src4 = [4]byte{192, 0, 2, 1}
	dst4 = [4]byte{198, 51, 100, 2}
	src6 = [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}
	dst6 = [16]byte{0x20, 0x01, 0x0d, 0xb8, 1, 15: 2}
)

// fill writes a position-dependent pattern so misplaced octets show.
func fill(b []byte, seed byte) {
	for i := range b {
		b[i] = byte(i*7+i>>8) ^ seed
	}
}

// ipv4 builds an IPv4 UDP-protocol packet of total length n with the given
// options (padded to 4 octets) and ID.
func ipv4(n int, id uint16, opts []byte) []byte {
	hl := packet.IPv4HeaderLen + (len(opts)+3)&^3
	b := make([]byte, n)
	fill(b[hl:], byte(id))
	packet.PutIPv4Header(b, 0, n, id, false, 64, packet.ProtoUDP, src4, dst4)
	copy(b[packet.IPv4HeaderLen:], opts)
	b[0] = 0x40 | byte(hl/4)
	packet.SetIPv4HeaderChecksum(b)
	return b
}

// frag4 builds one IPv4 fragment by hand.
func frag4(id uint16, off int, more bool, data []byte) []byte {
	b := make([]byte, packet.IPv4HeaderLen+len(data))
	packet.PutIPv4Header(b, 0, len(b), id, false, 64, packet.ProtoUDP, src4, dst4)
	ff := uint16(off / 8)
	if more {
		ff |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], ff)
	copy(b[packet.IPv4HeaderLen:], data)
	packet.SetIPv4HeaderChecksum(b)
	return b
}

// ipv6 builds an IPv6 packet: the fixed header, then the extension headers
// exts (each a type and a length in 8-octet units beyond the first 8), then
// n octets of upper-layer payload with next header nh.
func ipv6(n int, nh uint8, exts ...[2]int) []byte {
	extLen := 0
	for _, e := range exts {
		extLen += (e[1] + 1) * 8
	}
	b := make([]byte, packet.IPv6HeaderLen+extLen+n)
	first := nh
	if len(exts) > 0 {
		first = uint8(exts[0][0])
	}
	packet.PutIPv6Header(b, 0, len(b)-packet.IPv6HeaderLen, first, 64, src6, dst6)
	pos := packet.IPv6HeaderLen
	for i, e := range exts {
		next := nh
		if i+1 < len(exts) {
			next = uint8(exts[i+1][0])
		}
		b[pos], b[pos+1] = next, uint8(e[1])
		b[pos+2], b[pos+3] = 1, byte((e[1]+1)*8-4) // a PadN option filling the header
		pos += (e[1] + 1) * 8
	}
	fill(b[pos:], 0x5a)
	return b
}

// frag6 builds one IPv6 fragment by hand: fixed header, Fragment header
// (next header nh), data.
func frag6(id uint32, off int, more bool, nh uint8, data []byte) []byte {
	b := make([]byte, packet.IPv6HeaderLen+fragHeaderLen+len(data))
	packet.PutIPv6Header(b, 0, len(b)-packet.IPv6HeaderLen, nhFragment, 64, src6, dst6)
	h := b[packet.IPv6HeaderLen:]
	h[0] = nh
	v := uint16(off)
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(h[2:], v)
	binary.BigEndian.PutUint32(h[4:], id)
	copy(h[fragHeaderLen:], data)
	return b
}

// clock is a fake Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func shuffled(r *rand.Rand, in [][]byte) [][]byte {
	out := append([][]byte(nil), in...)
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

type adder interface {
	Add([]byte) ([]byte, error)
}

// feed adds pkts in order and returns the datagrams that came out; any
// error is returned at once.
func feed(a adder, pkts [][]byte) ([][]byte, error) {
	var out [][]byte
	for _, p := range pkts {
		o, err := a.Add(p)
		if err != nil {
			return out, err
		}
		if o != nil {
			out = append(out, o)
		}
	}
	return out, nil
}
