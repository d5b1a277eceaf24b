package frag

import (
	crand "crypto/rand"
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// IDs is a source of fragment identifications: Next16 for IPv4 (RFC 791),
// Next32 for the IPv6 Fragment header (RFC 8200 §4.5). Implementations are
// safe for concurrent use.
type IDs interface {
	Next32() uint32
	Next16() uint16
}

// RandomIDs returns unpredictable identifications (RFC 7739): a ChaCha8
// stream seeded from crypto/rand. It is the default; an off-path attacker
// cannot guess the ID of the next fragmented datagram to inject a forged
// fragment into it.
func RandomIDs() IDs {
	var seed [32]byte
	crand.Read(seed[:]) // never fails (Go 1.24+: crashes the program instead)
	return &randomIDs{r: rand.New(rand.NewChaCha8(seed))}
}

type randomIDs struct {
	mu sync.Mutex // rand.Rand is not safe for concurrent use; fragments are rare
	r  *rand.Rand
}

func (g *randomIDs) Next32() uint32 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.r.Uint32()
}

func (g *randomIDs) Next16() uint16 { return uint16(g.Next32()) }

// SequentialIDs returns first4, first4+1, … from Next16 and first6,
// first6+1, … from Next32, each wrapping around: Snabb lwAFTR's
// deterministic test mode is SequentialIDs(0x4243, 0x42424243), which its
// expected captures carry. Predictable: for tests and replay only.
func SequentialIDs(first4 uint16, first6 uint32) IDs {
	s := &sequentialIDs{}
	s.n4.Store(uint32(first4))
	s.n6.Store(first6)
	return s
}

type sequentialIDs struct{ n4, n6 atomic.Uint32 }

func (s *sequentialIDs) Next32() uint32 { return s.n6.Add(1) - 1 }
func (s *sequentialIDs) Next16() uint16 { return uint16(s.n4.Add(1) - 1) }
