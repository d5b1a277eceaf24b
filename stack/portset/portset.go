// Package portset describes restricted port sets: the contiguous ranges that
// PCP's PORT_SET option carries (RFC 7753 §4) and lw4o6 uses (RFC 7596 §5.1,
// a = 0), and the general PSID form of RFC 7597 §5.1 (a, k, PSID) that
// operator binding tables from other lwAFTRs use.
package portset

import (
	"errors"
	"fmt"
)

// Set is a set of transport ports (or ICMP identifiers).
type Set interface {
	// Contains reports whether port p is in the set.
	Contains(p uint16) bool
	// Len is the number of ports in the set.
	Len() int
	// Nth returns the i-th port of the set in ascending order, 0 <= i < Len().
	Nth(i int) uint16
}

// Range is the contiguous port range [First, First+Size-1].
type Range struct {
	First uint16
	Size  uint32 // 1..65536; a Range with Size 0 is empty
}

// ErrRange reports a range that runs past port 65535 or is empty.
var ErrRange = errors.New("portset: range empty or past port 65535")

// NewRange returns the range of size ports starting at first.
func NewRange(first uint16, size uint32) (Range, error) {
	if size == 0 || uint32(first)+size > 1<<16 {
		return Range{}, fmt.Errorf("%w: first %d size %d", ErrRange, first, size)
	}
	return Range{First: first, Size: size}, nil
}

// Contains reports whether p lies in the range.
func (r Range) Contains(p uint16) bool { return uint32(p-r.First) < r.Size && p >= r.First }

// Len is the number of ports in the range.
func (r Range) Len() int { return int(r.Size) }

// Nth returns First+i.
func (r Range) Nth(i int) uint16 { return r.First + uint16(i) }

// Last is the highest port of a non-empty range.
func (r Range) Last() uint16 { return uint16(uint32(r.First) + r.Size - 1) }

// Overlaps reports whether the two ranges share a port.
func (r Range) Overlaps(o Range) bool {
	if r.Size == 0 || o.Size == 0 {
		return false
	}
	return uint32(r.First) < uint32(o.First)+o.Size && uint32(o.First) < uint32(r.First)+r.Size
}

func (r Range) String() string {
	if r.Size == 0 {
		return "empty"
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last())
}

// PSID is a port set in the RFC 7597 §5.1 form: each port is split, most
// significant bit first, into A (Offset bits), PSID (Length bits) and j (the
// remaining m bits). The set holds every port whose PSID field equals ID and
// whose A field is non-zero when Offset > 0 (block A = 0, the ports below
// 2^(16-Offset), is excluded).
type PSID struct {
	Offset uint8  // a
	Length uint8  // k
	ID     uint16 // PSID value, < 2^k
}

// ErrPSID reports PSID parameters that do not describe a port set.
var ErrPSID = errors.New("portset: invalid PSID parameters")

// NewPSID validates and returns the set (a, k, psid).
func NewPSID(offset, length uint8, id uint16) (PSID, error) {
	if int(offset)+int(length) > 16 || (length < 16 && uint32(id) >= 1<<length) || (length == 16 && offset != 0) {
		return PSID{}, fmt.Errorf("%w: a=%d k=%d psid=%d", ErrPSID, offset, length, id)
	}
	return PSID{Offset: offset, Length: length, ID: id}, nil
}

func (p PSID) m() uint8 { return 16 - p.Offset - p.Length }

// Of returns the PSID field of port: (P mod (R·M)) / M (RFC 7597 §5.1).
func (p PSID) Of(port uint16) uint16 {
	if p.Length == 0 {
		return 0
	}
	return (port >> p.m()) & uint16(1<<p.Length-1)
}

// Contains reports whether port belongs to the set.
func (p PSID) Contains(port uint16) bool {
	if p.Offset > 0 && port>>(16-p.Offset) == 0 {
		return false
	}
	return p.Of(port) == p.ID
}

// Len is 2^(16-k) - 2^m when a > 0, and 2^(16-k) when a = 0.
func (p PSID) Len() int {
	n := 1 << (16 - p.Length)
	if p.Offset > 0 {
		n -= 1 << p.m()
	}
	return n
}

// Nth returns the i-th port in ascending order.
func (p PSID) Nth(i int) uint16 {
	m := p.m()
	blk := i >> m // which A value, counted from the first allowed one
	if p.Offset > 0 {
		blk++
	}
	j := i & (1<<m - 1)
	return uint16(blk<<(16-p.Offset) | int(p.ID)<<m | j)
}

// Ranges returns the set as ascending contiguous ranges (one when a = 0).
func (p PSID) Ranges() []Range {
	m := p.m()
	var out []Range
	for i := 0; i < p.Len(); i += 1 << m {
		out = append(out, Range{First: p.Nth(i), Size: 1 << m})
	}
	return out
}

// Contiguous returns the set as one Range when it is one (a = 0).
func (p PSID) Contiguous() (Range, bool) {
	if p.Offset != 0 {
		return Range{}, false
	}
	return Range{First: p.ID << p.m(), Size: 1 << p.m()}, true
}

func (p PSID) String() string { return fmt.Sprintf("a=%d,k=%d,psid=%d", p.Offset, p.Length, p.ID) }

// Block returns the aligned power-of-two block of size 2^(16-k) with index
// psid: the a = 0 set that lw4o6 hands out (RFC 7596 §5.1).
func Block(k uint8, psid uint16) Range {
	sz := uint32(1) << (16 - k)
	return Range{First: uint16(uint32(psid) * sz), Size: sz}
}
