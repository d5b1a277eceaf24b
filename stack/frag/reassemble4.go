package frag

import (
	"encoding/binary"
	"fmt"

	"github.com/lw4o6/lw4o6/stack/packet"
)

// key4 identifies an IPv4 datagram (RFC 791 §3.2).
type key4 struct {
	src, dst [4]byte
	id       uint16
	proto    uint8
}

// Reassembler4 reassembles IPv4 datagrams (RFC 791 §3.2, RFC 815). It is
// safe for concurrent use.
type Reassembler4 struct{ t *table[key4] }

// NewReassembler4 returns an empty reassembler bounded by cfg.
func NewReassembler4(cfg Config) *Reassembler4 { return &Reassembler4{newTable[key4](cfg)} }

// Add enters one IPv4 packet; see the package comment for what it returns.
// pkt's header is validated (packet.ParseIPv4) and pkt is not kept.
func (r *Reassembler4) Add(pkt []byte) ([]byte, error) {
	t := r.t
	p, err := packet.ParseIPv4(pkt)
	if err != nil {
		return nil, t.drop(fmt.Errorf("%w: %w", ErrMalformed, err))
	}
	if !p.IsFragment() {
		return p, nil
	}
	hl := p.HeaderLen()
	f := frag{off: p.FragOffset() * 8, data: p[hl:], more: p.MF(), ecn: p.TOS() & 3, hdr: p[:hl]}
	if f.more && (len(f.data) == 0 || len(f.data)%8 != 0) {
		return nil, t.drop(fmt.Errorf("%w: non-final fragment of %d octets", ErrMalformed, len(f.data)))
	}
	if packet.IPv4HeaderLen+f.off+len(f.data) > 0xffff {
		return nil, t.drop(ErrTooBig)
	}
	k := key4{p.Src(), p.Dst(), p.ID(), p.Protocol()}

	t.mu.Lock()
	defer t.mu.Unlock()
	d, err := t.get(k, t.cfg.Now())
	if err != nil {
		t.st.count(err)
		return nil, err
	}
	// A duplicate last fragment may still be the one that says where the
	// datagram ends.
	if err := t.add(d, f, false); err != nil && (err != ErrDuplicate || !d.complete()) {
		return nil, t.fail(d, err)
	}
	if !d.complete() {
		return nil, nil
	}
	t.remove(d)
	if len(d.hdr)+d.end > 0xffff {
		return nil, t.fail(nil, ErrTooBig)
	}
	ecn, err := d.ecnOut()
	if err != nil {
		return nil, t.fail(nil, err)
	}
	out := d.assemble()
	binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
	out[6] &= 0x40 // keep DF; clear MF, the reserved bit and the offset
	out[7] = 0
	if ecn >= 0 {
		out[1] = out[1]&^3 | byte(ecn)
	}
	packet.SetIPv4HeaderChecksum(out)
	t.st.Reassembled++
	return out, nil
}

// Expire drops the datagrams older than Timeout and returns how many.
func (r *Reassembler4) Expire() int { return r.t.Expire() }

// Stats returns a snapshot of the counters.
func (r *Reassembler4) Stats() Stats { return r.t.Stats() }
