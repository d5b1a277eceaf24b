package frag

import (
	"encoding/binary"
	"fmt"

	"github.com/lw4o6/lw4o6/stack/packet"
)

// key6 identifies an IPv6 packet being reassembled (RFC 8200 §4.5).
type key6 struct {
	src, dst [16]byte
	id       uint32
}

// Reassembler6 reassembles IPv6 packets from fragments (RFC 8200 §4.5,
// RFC 5722, RFC 6946). It is safe for concurrent use.
type Reassembler6 struct{ t *table[key6] }

// NewReassembler6 returns an empty reassembler bounded by cfg.
func NewReassembler6(cfg Config) *Reassembler6 { return &Reassembler6{newTable[key6](cfg)} }

// Add enters one IPv6 packet; see the package comment for what it returns.
// A packet without a Fragment header (after any Hop-by-Hop, Routing and
// Destination Options headers) is returned as it is; pkt is not kept.
func (r *Reassembler6) Add(pkt []byte) ([]byte, error) {
	t := r.t
	if len(pkt) < packet.IPv6HeaderLen || pkt[0]>>4 != 6 {
		return nil, t.drop(fmt.Errorf("%w: not an IPv6 header", ErrMalformed))
	}
	pl := int(binary.BigEndian.Uint16(pkt[4:]))
	if pl == 0 || packet.IPv6HeaderLen+pl > len(pkt) { // no jumbograms (RFC 2675)
		return nil, t.drop(fmt.Errorf("%w: IPv6 payload length", ErrMalformed))
	}
	b := pkt[:packet.IPv6HeaderLen+pl]
	pos, nhOff := packet.IPv6HeaderLen, 6
	nh := b[nhOff]
	for nh == nhHopByHop || nh == nhRouting || nh == nhDestOpts {
		n := extLen(b[pos:])
		if n == 0 {
			return nil, t.drop(fmt.Errorf("%w: IPv6 extension header", ErrMalformed))
		}
		nhOff, nh, pos = pos, b[pos], pos+n
	}
	if nh != nhFragment {
		return b, nil
	}
	if pos+fragHeaderLen > len(b) {
		return nil, t.drop(fmt.Errorf("%w: truncated Fragment header", ErrMalformed))
	}
	fh := b[pos : pos+fragHeaderLen]
	v := binary.BigEndian.Uint16(fh[2:])
	f := frag{
		off:  int(v &^ 7),
		data: b[pos+fragHeaderLen:],
		more: v&1 != 0,
		ecn:  b[1] >> 4 & 3,
		hdr:  b[:pos], nhOff: nhOff, nh: fh[0],
	}
	if f.off == 0 {
		// RFC 7112: the first fragment holds the whole extension header
		// chain; RFC 8200 §4.1: one Fragment header at most.
		if err := checkChain(f.nh, f.data); err != nil {
			return nil, t.drop(err)
		}
		if !f.more {
			// An atomic fragment: processed in isolation, never mixed with
			// fragments of the same ID (RFC 6946 §4, RFC 8200 §4.5).
			out := make([]byte, pos+len(f.data))
			copy(out, b[:pos])
			out[nhOff] = f.nh
			copy(out[pos:], f.data)
			binary.BigEndian.PutUint16(out[4:], uint16(len(out)-packet.IPv6HeaderLen))
			t.mu.Lock()
			t.st.Atomic++
			t.mu.Unlock()
			return out, nil
		}
	}
	// RFC 8200 §4.5: a non-final fragment's length is a multiple of 8.
	if f.more && (len(f.data) == 0 || len(f.data)%8 != 0) {
		return nil, t.drop(fmt.Errorf("%w: non-final fragment of %d octets", ErrMalformed, len(f.data)))
	}
	if pos-packet.IPv6HeaderLen+f.off+len(f.data) > 0xffff {
		return nil, t.drop(ErrTooBig)
	}
	k := key6{[16]byte(b[8:24]), [16]byte(b[24:40]), binary.BigEndian.Uint32(fh[4:])}

	t.mu.Lock()
	defer t.mu.Unlock()
	d, err := t.get(k, t.cfg.Now())
	if err != nil {
		t.st.count(err)
		return nil, err
	}
	if err := t.add(d, f, true); err != nil && (err != ErrDuplicate || !d.complete()) {
		return nil, t.fail(d, err)
	}
	if !d.complete() {
		return nil, nil
	}
	t.remove(d)
	if len(d.hdr)-packet.IPv6HeaderLen+d.end > 0xffff {
		return nil, t.fail(nil, ErrTooBig)
	}
	ecn, err := d.ecnOut()
	if err != nil {
		return nil, t.fail(nil, err)
	}
	out := d.assemble()
	binary.BigEndian.PutUint16(out[4:], uint16(len(out)-packet.IPv6HeaderLen))
	if ecn >= 0 {
		out[1] = out[1]&^0x30 | byte(ecn)<<4
	}
	t.st.Reassembled++
	return out, nil
}

// Expire drops the packets older than Timeout and returns how many.
func (r *Reassembler6) Expire() int { return r.t.Expire() }

// Stats returns a snapshot of the counters.
func (r *Reassembler6) Stats() Stats { return r.t.Stats() }

// extLen is the length of the extension header at the start of b, or 0 if
// it does not fit in b.
func extLen(b []byte) int {
	if len(b) < 8 {
		return 0
	}
	if n := (int(b[1]) + 1) * 8; n <= len(b) {
		return n
	}
	return 0
}

// checkChain walks the extension headers that follow a first fragment's
// Fragment header, starting with next header nh, within data.
func checkChain(nh uint8, data []byte) error {
	for {
		switch nh {
		case nhFragment:
			return fmt.Errorf("%w: second Fragment header", ErrMalformed)
		case nhHopByHop, nhRouting, nhDestOpts:
			n := extLen(data)
			if n == 0 {
				return fmt.Errorf("%w: first fragment cuts the header chain", ErrMalformed)
			}
			nh, data = data[0], data[n:]
		default:
			return nil
		}
	}
}
