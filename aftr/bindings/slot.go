package bindings

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"sync/atomic"
)

// Flags in the low 16 bits of entry.meta; the high 16 bits index Table.brs.
const (
	flagPresent uint32 = 1 << 0 // the slot holds a binding or a hold-down record
	flagStatic  uint32 = 1 << 1 // operator binding: never expires
	flagHeld    uint32 = 1 << 2 // hold-down record, no longer a binding: exp is when the hold ends

	// Bits 3-12 hold the set number: which of its B4's port sets the
	// entry is (docs/port-sets.md).
	setShift        = 3
	setMask  uint32 = MaxSet << setShift

	// flagReserved (with flagHeld) marks a block kept for its last owner
	// after its hold-down (or named by a journal): exp is when the
	// reservation ends. Unlike a hold-down it is soft (reserve.go).
	flagReserved uint32 = 1 << 13
)

// slot is one entry's value as a plain struct.
type slot struct {
	meta   uint32
	hi, lo uint64 // B4 IPv6 address
	exp    int64  // Unix ns: end of life (dynamic), end of hold-down (held), 0 (static)
}

func (v slot) present() bool { return v.meta&flagPresent != 0 }
func (v slot) static() bool  { return v.meta&flagStatic != 0 }
func (v slot) held() bool    { return v.meta&flagHeld != 0 }
func (v slot) reserved() bool {
	return v.meta&flagReserved != 0
}
func (v slot) br() uint16   { return uint16(v.meta >> 16) }
func (v slot) owner() b4Key { return b4Key{v.hi, v.lo} }
func (v slot) set() uint16  { return uint16(v.meta & setMask >> setShift) }

// live reports whether the slot is a binding at time now (Unix ns).
func (v slot) live(now int64) bool {
	return v.present() && !v.held() && (v.static() || now < v.exp)
}

// b4Key is a B4 IPv6 address as two words: 16 bytes, comparable, no zone.
type b4Key struct{ hi, lo uint64 }

func keyOf(a netip.Addr) b4Key {
	b := a.As16()
	return b4Key{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (k b4Key) addr() netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], k.hi)
	binary.BigEndian.PutUint64(b[8:], k.lo)
	return netip.AddrFrom16(b)
}

// entry is one softwire slot, 32 bytes and pointer-free so that 4 M of them
// cost the garbage collector nothing to scan. It is a seqlock: the writer
// (always holding Table.mu) makes seq odd, stores the words, makes it even;
// a reader retries until it sees the same even seq before and after. Every
// word is an atomic, so the race detector accepts the scheme and a reader
// never sees one B4's address with another's BR or expiry.
type entry struct {
	seq    atomic.Uint32
	meta   atomic.Uint32
	hi, lo atomic.Uint64
	exp    atomic.Int64
}

// load returns a consistent copy of the entry without taking a lock.
func (e *entry) load() slot {
	for spins := 0; ; spins++ {
		s := e.seq.Load()
		if s&1 == 0 {
			v := slot{e.meta.Load(), e.hi.Load(), e.lo.Load(), e.exp.Load()}
			if e.seq.Load() == s {
				return v
			}
		}
		if spins > 16 {
			runtime.Gosched() // the writer was preempted mid-update
		}
	}
}

// peek reads the entry for a writer, which excludes other writers by Table.mu.
func (e *entry) peek() slot {
	return slot{e.meta.Load(), e.hi.Load(), e.lo.Load(), e.exp.Load()}
}

func (e *entry) store(v slot) {
	e.seq.Add(1)
	e.meta.Store(v.meta)
	e.hi.Store(v.hi)
	e.lo.Store(v.lo)
	e.exp.Store(v.exp)
	e.seq.Add(1)
}

// Slots of an address with at most flatMax PSIDs live in one slice made at
// once; larger PSID spaces (k > 6, blocks under 1024 ports) are made chunk by
// chunk as they fill, so that one binding at k = 15 costs 6 KB and not 1 MB.
const (
	chunkBits = 6
	chunkLen  = 1 << chunkBits
	flatMax   = chunkLen
)

type chunk [chunkLen]entry

// addrSet is the softwires of one public IPv4 address: its PSID parameters
// (a and k MUST be the same for every CE sharing the address, RFC 7597 §5.1)
// and one entry per PSID. Its shape (a, k, flat, len(chunks)) never changes;
// an address whose last entry is freed is dropped and made anew.
type addrSet struct {
	a, k   uint8
	m      uint8  // 16 - a - k
	mask   uint16 // 2^k - 1
	flat   []entry
	chunks []atomic.Pointer[chunk]

	// Written and read only under Table.mu.
	n     int    // present entries (bindings and hold-down records)
	nLow  int    // present entries below lowPSID (a = 0 only)
	nLive int    // bindings (present, not held)
	hint  uint32 // no free entry at or above lowPSID lies below hint
}

func newAddrSet(a, k uint8) *addrSet {
	s := &addrSet{a: a, k: k, m: 16 - a - k, mask: uint16(1<<k - 1)}
	if n := 1 << k; n <= flatMax {
		s.flat = make([]entry, n)
	} else {
		s.chunks = make([]atomic.Pointer[chunk], n/chunkLen)
	}
	return s
}

// psidOf returns the PSID field of port (RFC 7597 §5.1), and false for a port
// in block A = 0, which belongs to no PSID when a > 0.
func (s *addrSet) psidOf(port uint16) (uint16, bool) {
	if s.a > 0 && uint32(port)>>(16-s.a) == 0 {
		return 0, false
	}
	return uint16(uint32(port)>>s.m) & s.mask, true
}

// entry returns the entry of psid, or nil when its chunk was never made.
func (s *addrSet) entry(psid uint16) *entry {
	if s.flat != nil {
		return &s.flat[psid]
	}
	c := s.chunks[psid>>chunkBits].Load()
	if c == nil {
		return nil
	}
	return &c[psid&(chunkLen-1)]
}

// entryW returns the entry of psid, making its chunk (writers only).
func (s *addrSet) entryW(psid uint16) *entry {
	if s.flat != nil {
		return &s.flat[psid]
	}
	p := &s.chunks[psid>>chunkBits]
	c := p.Load()
	if c == nil {
		c = new(chunk)
		p.Store(c)
	}
	return &c[psid&(chunkLen-1)]
}

// slotAt reads psid's entry for a writer; a missing chunk reads as free.
func (s *addrSet) slotAt(psid uint16) slot {
	if e := s.entry(psid); e != nil {
		return e.peek()
	}
	return slot{}
}

// size is the number of PSIDs, 2^k.
func (s *addrSet) size() uint32 { return 1 << s.k }

// lowPSID is the first a = 0 block of size 2^(16-k) that holds no port below
// 1024: the system ports are never handed out (RFC 7596 §5.1, RFC 6346).
// A whole address (k = 0) has no such block.
func lowPSID(k uint8) uint32 {
	if k == 0 {
		return 1
	}
	if sz := uint32(1) << (16 - k); sz < 1024 {
		return 1024 / sz
	}
	return 1
}

// free is the number of entries the pool could still hand out: a = 0 blocks
// clear of the system ports and not present.
func (s *addrSet) free() int {
	if s.a != 0 {
		return 0
	}
	lo := lowPSID(s.k)
	if lo >= s.size() {
		return 0
	}
	return int(s.size()-lo) - (s.n - s.nLow)
}

// Radix index from an IPv4 address to its addrSet: 16 + 8 + 8 bits, so that
// a lookup is three dependent loads and no lock, and sparse tables stay small.
type (
	node3 [256]atomic.Pointer[addrSet]
	node2 [256]atomic.Pointer[node3]
	root  [1 << 16]atomic.Pointer[node2]
)

func (r *root) get(ip uint32) *addrSet {
	n2 := r[ip>>16].Load()
	if n2 == nil {
		return nil
	}
	n3 := n2[ip>>8&0xff].Load()
	if n3 == nil {
		return nil
	}
	return n3[ip&0xff].Load()
}

func (r *root) put(ip uint32, s *addrSet) {
	n2 := r[ip>>16].Load()
	if n2 == nil {
		n2 = new(node2)
		r[ip>>16].Store(n2)
	}
	n3 := n2[ip>>8&0xff].Load()
	if n3 == nil {
		n3 = new(node3)
		n2[ip>>8&0xff].Store(n3)
	}
	n3[ip&0xff].Store(s)
}

// each calls f for every address in ascending order.
func (r *root) each(f func(ip uint32, s *addrSet)) {
	for i := range r {
		n2 := r[i].Load()
		if n2 == nil {
			continue
		}
		for j := range n2 {
			n3 := n2[j].Load()
			if n3 == nil {
				continue
			}
			for l := range n3 {
				if s := n3[l].Load(); s != nil {
					f(uint32(i)<<16|uint32(j)<<8|uint32(l), s)
				}
			}
		}
	}
}

// eachEntry calls f for every made entry of s in PSID order.
func (s *addrSet) eachEntry(f func(psid uint16, e *entry)) {
	if s.flat != nil {
		for i := range s.flat {
			f(uint16(i), &s.flat[i])
		}
		return
	}
	for c := range s.chunks {
		ch := s.chunks[c].Load()
		if ch == nil {
			continue
		}
		for i := range ch {
			f(uint16(c<<chunkBits|i), &ch[i])
		}
	}
}

func ip4(u uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
}

func u32(a [4]byte) uint32 { return binary.BigEndian.Uint32(a[:]) }
