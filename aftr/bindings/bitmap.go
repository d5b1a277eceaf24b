package bindings

import "math/bits"

// bitmap is a set of pool indices with a find-lowest cursor.
type bitmap struct {
	w  []uint64
	lo int // no set bit in words below lo
}

func newBitmap(n int) *bitmap { return &bitmap{w: make([]uint64, (n+63)/64)} }

func (b *bitmap) put(i int, on bool) {
	if on {
		b.w[i/64] |= 1 << (i % 64)
		b.lo = min(b.lo, i/64)
	} else {
		b.w[i/64] &^= 1 << (i % 64)
	}
}

// first returns the lowest member, or -1.
func (b *bitmap) first() int {
	for ; b.lo < len(b.w); b.lo++ {
		if w := b.w[b.lo]; w != 0 {
			return b.lo*64 + bits.TrailingZeros64(w)
		}
	}
	return -1
}
