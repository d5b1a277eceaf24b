package portset

import "testing"

// RFC 7597 §5.1 worked example: a=6, k=8, PSID 0x34 gives 1232-1235,
// 2256-2259, ..., 64720-64723: 63 ranges of 4.
func TestPSIDRFC7597Example(t *testing.T) {
	p, err := NewPSID(6, 8, 0x34)
	if err != nil {
		t.Fatal(err)
	}
	rs := p.Ranges()
	if len(rs) != 63 || rs[0] != (Range{1232, 4}) || rs[1] != (Range{2256, 4}) || rs[62] != (Range{64720, 4}) {
		t.Fatalf("ranges = %d, first %v, second %v, last %v", len(rs), rs[0], rs[1], rs[len(rs)-1])
	}
	if p.Len() != 252 {
		t.Fatalf("Len = %d, want 252", p.Len())
	}
	n := 0
	for port := 0; port < 1<<16; port++ {
		in := p.Contains(uint16(port))
		if in {
			if got := p.Nth(n); got != uint16(port) {
				t.Fatalf("Nth(%d) = %d, want %d", n, got, port)
			}
			n++
		}
	}
	if n != p.Len() {
		t.Fatalf("counted %d ports, Len %d", n, p.Len())
	}
}

// RFC 7597 §5.1: with offset a the excluded ports are block A = 0, those
// below 2^(16-a): 0-1023 for a = 6.
func TestPSIDOffsetExcludesBlockAZero(t *testing.T) {
	for _, a := range []uint8{1, 4, 6} {
		p := PSID{Offset: a, Length: 16 - a - 2, ID: 0}
		limit := 1 << (16 - a)
		for port := 0; port < limit; port++ {
			if p.Contains(uint16(port)) {
				t.Fatalf("a=%d: port %d below %d is in the set", a, port, limit)
			}
		}
		if !p.Contains(uint16(limit)) {
			t.Fatalf("a=%d: port %d should be in PSID 0", a, limit)
		}
	}
}

func TestContiguousBlocks(t *testing.T) {
	r := Block(6, 3)
	if r.First != 3072 || r.Size != 1024 || r.Last() != 4095 {
		t.Fatalf("Block(6,3) = %v", r)
	}
	p := PSID{Length: 6, ID: 3}
	c, ok := p.Contiguous()
	if !ok || c != r {
		t.Fatalf("Contiguous = %v %v", c, ok)
	}
	if !r.Contains(3072) || !r.Contains(4095) || r.Contains(4096) || r.Contains(3071) {
		t.Fatal("Contains wrong at the edges")
	}
	if _, err := NewRange(65535, 2); err == nil {
		t.Fatal("range past 65535 accepted")
	}
	if _, err := NewRange(0, 0); err == nil {
		t.Fatal("empty range accepted")
	}
	full, err := NewRange(0, 65536)
	if err != nil || !full.Contains(65535) || full.Last() != 65535 {
		t.Fatalf("full range: %v %v", full, err)
	}
	if !(Range{10, 5}).Overlaps(Range{14, 1}) || (Range{10, 5}).Overlaps(Range{15, 1}) {
		t.Fatal("Overlaps wrong")
	}
}

func TestNewPSIDRejects(t *testing.T) {
	for _, c := range [][3]int{{10, 7, 0}, {0, 4, 16}, {1, 16, 0}} {
		if _, err := NewPSID(uint8(c[0]), uint8(c[1]), uint16(c[2])); err == nil {
			t.Errorf("NewPSID%v accepted", c)
		}
	}
}
