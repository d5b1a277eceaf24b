package frag

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Errors of the reassemblers: each names a counted drop (see Stats).
var (
	ErrTooManyFragments = errors.New("frag: too many fragments in one datagram")
	ErrTableFull        = errors.New("frag: reassembly table full")
	ErrTooBig           = errors.New("frag: reassembled datagram over 65535 octets")
	ErrOverlap          = errors.New("frag: overlapping fragments")
	ErrDuplicate        = errors.New("frag: duplicate fragment")
	ErrMalformed        = errors.New("frag: malformed fragment")
)

// Config bounds a reassembler. Zero fields take the defaults.
type Config struct {
	// MaxFragmentsPerPacket is the most fragments one datagram may have;
	// default 20 (Snabb's max-fragments-per-packet).
	MaxFragmentsPerPacket int
	// MaxPackets is the most datagrams being reassembled at once; default
	// 1024.
	MaxPackets int
	// Timeout is how long a datagram may take to complete, from its first
	// fragment; default 30 s (see the package comment for why).
	Timeout time.Duration
	// DropNewWhenFull makes a full table refuse a new datagram
	// (ErrTableFull) instead of evicting the oldest one.
	DropNewWhenFull bool
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.MaxFragmentsPerPacket <= 0 {
		c.MaxFragmentsPerPacket = 20
	}
	if c.MaxPackets <= 0 {
		c.MaxPackets = 1024
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Stats are a reassembler's counters. Drops count fragments refused by Add
// (for TooManyFragments, Overlap and the end conflicts counted in Malformed
// the datagram's other fragments are discarded with it); Timeouts and
// Evicted count whole datagrams.
type Stats struct {
	Reassembled uint64 // datagrams completed
	Fragments   uint64 // fragments stored
	Atomic      uint64 // IPv6 atomic fragments processed whole (RFC 6946)
	InFlight    int    // datagrams being reassembled now
	Capacity    int    // MaxPackets: warn the operator as InFlight nears it (RFC 6333 §6.3)
	Timeouts    uint64 // datagrams abandoned after Timeout
	Evicted     uint64 // datagrams abandoned to make room for a new one

	TooManyFragments uint64
	TableFull        uint64
	TooBig           uint64
	Overlap          uint64
	Duplicate        uint64
	Malformed        uint64
}

func (s *Stats) count(err error) {
	switch {
	case errors.Is(err, ErrTooManyFragments):
		s.TooManyFragments++
	case errors.Is(err, ErrTableFull):
		s.TableFull++
	case errors.Is(err, ErrTooBig):
		s.TooBig++
	case errors.Is(err, ErrOverlap):
		s.Overlap++
	case errors.Is(err, ErrDuplicate):
		s.Duplicate++
	case errors.Is(err, ErrMalformed):
		s.Malformed++
	}
}

// piece is stored fragment data covering [off, off+len(data)) of the
// datagram's payload. A datagram's pieces are disjoint and sorted.
type piece struct {
	off  int
	data []byte
}

func (p piece) end() int { return p.off + len(p.data) }

// datagram is one datagram being reassembled.
type datagram[K comparable] struct {
	key        K
	created    time.Time
	prev, next *datagram[K] // age list, oldest first
	pieces     []piece
	have       int    // octets held
	end        int    // payload length, from the last fragment; -1 until then
	count      int    // fragments stored
	hdr        []byte // headers of the offset-0 fragment, ready for output
	ecn        uint8  // bit set of the ECN codepoints seen (RFC 3168 §5.3)
}

func (d *datagram[K]) complete() bool { return d.hdr != nil && d.end >= 0 && d.have == d.end }

// table is the bounded, locked map of datagrams both reassemblers share.
type table[K comparable] struct {
	mu         sync.Mutex
	cfg        Config
	m          map[K]*datagram[K]
	head, tail *datagram[K]
	st         Stats
}

func newTable[K comparable](cfg Config) *table[K] {
	cfg = cfg.withDefaults()
	return &table[K]{cfg: cfg, m: make(map[K]*datagram[K]), st: Stats{Capacity: cfg.MaxPackets}}
}

// get finds or makes the datagram for k. Called with t.mu held.
func (t *table[K]) get(k K, now time.Time) (*datagram[K], error) {
	if d := t.m[k]; d != nil {
		if now.Sub(d.created) < t.cfg.Timeout {
			return d, nil
		}
		t.remove(d)
		t.st.Timeouts++
	}
	if len(t.m) >= t.cfg.MaxPackets {
		t.expire(now)
	}
	if len(t.m) >= t.cfg.MaxPackets {
		if t.cfg.DropNewWhenFull {
			return nil, ErrTableFull
		}
		t.remove(t.head)
		t.st.Evicted++
	}
	d := &datagram[K]{key: k, created: now, end: -1, prev: t.tail}
	if t.tail != nil {
		t.tail.next = d
	} else {
		t.head = d
	}
	t.tail = d
	t.m[k] = d
	return d, nil
}

func (t *table[K]) remove(d *datagram[K]) {
	if d.prev != nil {
		d.prev.next = d.next
	} else {
		t.head = d.next
	}
	if d.next != nil {
		d.next.prev = d.prev
	} else {
		t.tail = d.prev
	}
	d.prev, d.next = nil, nil
	delete(t.m, d.key)
}

// expire drops the datagrams older than Timeout. Called with t.mu held.
func (t *table[K]) expire(now time.Time) int {
	n := 0
	for t.head != nil && now.Sub(t.head.created) >= t.cfg.Timeout {
		t.remove(t.head)
		n++
	}
	t.st.Timeouts += uint64(n)
	return n
}

func (t *table[K]) Expire() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.expire(t.cfg.Now())
}

func (t *table[K]) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.st
	s.InFlight = len(t.m)
	return s
}

// frag is one fragment as both families see it.
type frag struct {
	off  int    // offset of data in the datagram's payload, octets
	data []byte // fragment data (aliases the caller's packet)
	more bool   // MF / M
	ecn  uint8  // ECN codepoint
	// hdr are the headers before the fragment data, copied as the output's
	// headers when off == 0, with hdr[nhOff] = nh when nhOff > 0 (IPv6:
	// the Next Header before the Fragment header, RFC 8200 §4.5).
	hdr   []byte
	nhOff int
	nh    uint8
}

// add enters f into d. strict (IPv6, RFC 5722 §4) refuses every overlap
// but an exact duplicate; otherwise an overlap with identical octets is
// accepted and only the new octets are stored. Any error but ErrDuplicate
// means d must be discarded. Called with t.mu held.
func (t *table[K]) add(d *datagram[K], f frag, strict bool) error {
	end := f.off + len(f.data)
	// Where the datagram ends: only the last fragment says, once.
	if !f.more {
		if d.end >= 0 && d.end != end {
			return errEndConflict
		}
		if n := len(d.pieces); n > 0 && d.pieces[n-1].end() > end {
			return errEndConflict
		}
	} else if d.end >= 0 && end > d.end {
		return errEndConflict
	}
	covered, dup := 0, false
	for _, p := range d.pieces {
		if p.end() <= f.off {
			continue
		}
		if p.off >= end {
			break
		}
		lo, hi := max(p.off, f.off), min(p.end(), end)
		same := bytes.Equal(p.data[lo-p.off:hi-p.off], f.data[lo-f.off:hi-f.off])
		if strict {
			if !same || p.off != f.off || p.end() != end {
				return ErrOverlap
			}
			dup = true
		} else if !same {
			return ErrOverlap
		}
		covered += hi - lo
	}
	if !f.more {
		d.end = end
	}
	if dup || (covered == len(f.data) && len(f.data) > 0) {
		return ErrDuplicate
	}
	d.count++
	if d.count > t.cfg.MaxFragmentsPerPacket {
		return ErrTooManyFragments
	}
	t.st.Fragments++
	d.ecn |= 1 << f.ecn
	if f.off == 0 && d.hdr == nil {
		d.hdr = bytes.Clone(f.hdr)
		if f.nhOff > 0 {
			d.hdr[f.nhOff] = f.nh
		}
	}
	// Store the octets not yet held, each gap as its own piece.
	cur, i := f.off, 0
	for ; i < len(d.pieces) && cur < end; i++ {
		p := d.pieces[i]
		if p.end() <= cur {
			continue
		}
		if p.off > cur {
			hi := min(p.off, end)
			d.insert(i, piece{cur, bytes.Clone(f.data[cur-f.off : hi-f.off])})
			i++
			cur = hi
		}
		cur = max(cur, p.end())
	}
	if cur < end {
		d.insert(i, piece{cur, bytes.Clone(f.data[cur-f.off:])})
	}
	return nil
}

var errEndConflict = fmt.Errorf("%w: fragments disagree on the datagram's end", ErrMalformed)

func (d *datagram[K]) insert(i int, p piece) {
	d.pieces = append(d.pieces, piece{})
	copy(d.pieces[i+1:], d.pieces[i:])
	d.pieces[i] = p
	d.have += len(p.data)
}

// ecnOut applies RFC 3168 §5.3 (Linux's ip_frag_ecn_table): CE in any
// fragment makes the datagram CE; Not-ECT mixed with ECT or CE is invalid.
// It returns the codepoint to set (or -1 to keep the first fragment's).
func (d *datagram[K]) ecnOut() (int, error) {
	const notECT, ce = 1 << 0, 1 << 3
	switch {
	case d.ecn&notECT != 0 && d.ecn != notECT:
		return 0, errECN
	case d.ecn&ce != 0:
		return 3, nil
	}
	return -1, nil
}

var errECN = fmt.Errorf("%w: ECN codepoints of the fragments mix Not-ECT with ECT", ErrMalformed)

// assemble copies d's pieces after its headers into a new buffer.
func (d *datagram[K]) assemble() []byte {
	out := make([]byte, len(d.hdr)+d.end)
	copy(out, d.hdr)
	for _, p := range d.pieces {
		copy(out[len(d.hdr)+p.off:], p.data)
	}
	return out
}

// drop counts err, which concerns a fragment alone, and returns it.
func (t *table[K]) drop(err error) error {
	t.mu.Lock()
	t.st.count(err)
	t.mu.Unlock()
	return err
}

// fail counts err and, unless it is ErrDuplicate, discards d (which may be
// nil when already removed). Called with t.mu held.
func (t *table[K]) fail(d *datagram[K], err error) error {
	t.st.count(err)
	if d != nil && err != ErrDuplicate {
		t.remove(d)
	}
	return err
}
