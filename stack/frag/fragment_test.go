package frag

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/lw4o6/lw4o6/stack/packet"
)

// checkFragments4 checks RFC 791 §3.2's rules on frags of orig at mtu.
func checkFragments4(t *testing.T, orig []byte, frags [][]byte, mtu int) {
	t.Helper()
	o := packet.IPv4(orig)
	next := o.FragOffset() * 8
	for i, f := range frags {
		p, err := packet.ParseIPv4(f)
		if err != nil || len(p) != len(f) {
			t.Fatalf("fragment %d: %v", i, err)
		}
		last := i == len(frags)-1
		switch {
		case len(f) > mtu:
			t.Fatalf("fragment %d: %d octets > mtu %d", i, len(f), mtu)
		case p.FragOffset()*8 != next:
			t.Fatalf("fragment %d: offset %d, want %d", i, p.FragOffset()*8, next)
		case !last && len(p.Payload())%8 != 0:
			t.Fatalf("fragment %d: payload %d not a multiple of 8", i, len(p.Payload()))
		case p.MF() != (!last || o.MF()):
			t.Fatalf("fragment %d: MF %v", i, p.MF())
		case p.DF():
			t.Fatalf("fragment %d: DF", i)
		case !last && (mtu-p.HeaderLen())&^7 != len(p.Payload()):
			t.Fatalf("fragment %d: %d octets, not the largest multiple of 8 that fits", i, len(p.Payload()))
		case p.Src() != o.Src() || p.Dst() != o.Dst() || p.Protocol() != o.Protocol() || p.TTL() != o.TTL() || p.TOS() != o.TOS():
			t.Fatalf("fragment %d: header fields changed", i)
		}
		next += len(p.Payload())
	}
	if next != o.FragOffset()*8+len(o.Payload()) {
		t.Fatalf("fragments end at %d, want %d", next, len(o.Payload()))
	}
}

// checkFragments6 checks RFC 8200 §4.5's rules on frags at mtu with
// unfragmentable part length unfrag.
func checkFragments6(t *testing.T, frags [][]byte, mtu, unfrag int, id uint32) {
	t.Helper()
	next := 0
	for i, f := range frags {
		last := i == len(frags)-1
		if len(f) > mtu {
			t.Fatalf("fragment %d: %d octets > mtu %d", i, len(f), mtu)
		}
		if int(binary.BigEndian.Uint16(f[4:]))+packet.IPv6HeaderLen != len(f) {
			t.Fatalf("fragment %d: payload length", i)
		}
		var p packet.IPv6
		if err := packet.ParseIPv6(f, &p); err != packet.ErrFragment {
			t.Fatalf("fragment %d: ParseIPv6 = %v", i, err)
		}
		h := f[unfrag:]
		v := binary.BigEndian.Uint16(h[2:])
		data := len(f) - unfrag - fragHeaderLen
		switch {
		case h[1] != 0 || v&6 != 0:
			t.Fatalf("fragment %d: reserved fields not 0", i)
		case int(v&^7) != next:
			t.Fatalf("fragment %d: offset %d, want %d", i, v&^7, next)
		case v&1 == 1 == last:
			t.Fatalf("fragment %d: M flag", i)
		case binary.BigEndian.Uint32(h[4:]) != id:
			t.Fatalf("fragment %d: id", i)
		case !last && data != (mtu-unfrag-fragHeaderLen)&^7:
			t.Fatalf("fragment %d: %d octets, not the largest multiple of 8 that fits", i, data)
		}
		next += data
	}
}

// TestFragmentRoundTrip is the property test: for random sizes, MTUs,
// options and extension headers, fragmenting obeys RFC 791 §3.2 / RFC 8200
// §4.5 and reassembling the fragments in any order gives back the
// original, byte for byte.
func TestFragmentRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	optSets := [][]byte{
		nil,
		{0x94, 4, 0, 0},             // Router Alert: copied
		{0x07, 7, 4, 0, 0, 0, 0},    // Record Route: not copied
		{0x01, 0x83, 7, 4, 1, 2, 3}, // NOP, LSRR: copied
		{0x07, 7, 4, 0, 0, 0, 0, 0x94, 4, 0, 0, 0x01, 0x89, 3, 4},
	}
	r4 := NewReassembler4(Config{MaxFragmentsPerPacket: 9000})
	for i := range 3000 {
		opts := optSets[rng.IntN(len(optSets))]
		hl := packet.IPv4HeaderLen + (len(opts)+3)&^3
		n := hl + rng.IntN(65536-hl)
		if i%2 == 0 {
			n = hl + rng.IntN(3000)
		}
		mtu := 68 + rng.IntN(9000)
		orig := ipv4(n, uint16(i), opts)
		frags, err := FragmentIPv4(orig, mtu)
		if err != nil {
			t.Fatalf("n %d mtu %d: %v", n, mtu, err)
		}
		if len(frags) == 1 {
			if !bytes.Equal(frags[0], orig) {
				t.Fatal("unfragmented packet changed")
			}
			continue
		}
		checkFragments4(t, orig, frags, mtu)
		got, err := feed(r4, shuffled(rng, frags))
		if err != nil || len(got) != 1 || !bytes.Equal(got[0], orig) {
			t.Fatalf("IPv4 n %d mtu %d opts %x: %d datagrams, %v", n, mtu, opts, len(got), err)
		}
	}

	extSets := [][][2]int{
		nil,
		{{nhHopByHop, 0}},
		{{nhDestOpts, 1}},
		{{nhHopByHop, 0}, {nhDestOpts, 0}, {nhRouting, 2}, {nhDestOpts, 0}},
		{{nhRouting, 0}},
	}
	r6 := NewReassembler6(Config{MaxFragmentsPerPacket: 9000})
	for i := range 3000 {
		exts := extSets[rng.IntN(len(extSets))]
		n := 1 + rng.IntN(65535-200)
		if i%2 == 0 {
			n = 1 + rng.IntN(3000)
		}
		orig := ipv6(n, packet.ProtoIPIP, exts...)
		// RFC 8200 §4.5: unfragmentable = up to the last Hop-by-Hop or
		// Routing header.
		unfrag, chain := packet.IPv6HeaderLen, packet.IPv6HeaderLen
		for _, e := range exts {
			chain += (e[1] + 1) * 8
			if e[0] != nhDestOpts {
				unfrag = chain
			}
		}
		mtu := unfrag + fragHeaderLen + max(8, (chain-unfrag+7)&^7) + rng.IntN(9000)
		id := rng.Uint32()
		frags, err := FragmentIPv6(orig, mtu, id)
		if err != nil {
			t.Fatalf("n %d mtu %d: %v", n, mtu, err)
		}
		if len(frags) == 1 {
			if !bytes.Equal(frags[0], orig) {
				t.Fatal("unfragmented packet changed")
			}
			continue
		}
		checkFragments6(t, frags, mtu, unfrag, id)
		got, err := feed(r6, shuffled(rng, frags))
		if err != nil || len(got) != 1 || !bytes.Equal(got[0], orig) {
			t.Fatalf("IPv6 n %d mtu %d exts %v: %d packets, %v", n, mtu, exts, len(got), err)
		}
	}
	if s := r4.Stats(); s.InFlight != 0 || s.Malformed+s.Overlap+s.TooBig != 0 {
		t.Errorf("IPv4 stats %+v", s)
	}
	if s := r6.Stats(); s.InFlight != 0 || s.Malformed+s.Overlap+s.TooBig != 0 {
		t.Errorf("IPv6 stats %+v", s)
	}
}

// TestFragmentIPv4Options: RFC 791 §3.2: the first fragment keeps every
// option, the others only those with the copied flag, padded.
func TestFragmentIPv4Options(t *testing.T) {
	opts := []byte{0x07, 7, 4, 0, 0, 0, 0, 0x94, 4, 0, 0} // RR (not copied), RA (copied)
	orig := ipv4(1000, 7, opts)
	frags, err := FragmentIPv4(orig, 500)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(frags[0][:32], append(append([]byte(nil), frags[0][:20]...), opts[0], opts[1], opts[2], opts[3], opts[4], opts[5], opts[6], opts[7], opts[8], opts[9], opts[10], 0)) {
		t.Errorf("first fragment options %x", frags[0][20:32])
	}
	for _, f := range frags[1:] {
		if f[0] != 0x46 || !bytes.Equal(f[20:24], []byte{0x94, 4, 0, 0}) {
			t.Errorf("later fragment header %x", f[:24])
		}
	}
	checkFragments4(t, orig, frags, 500)
	if _, err := FragmentIPv4(ipv4(1000, 7, []byte{0x94, 9}), 500); !errors.Is(err, ErrMalformed) {
		t.Errorf("option running past the header: %v", err)
	}
}

func TestFragmentIPv4Errors(t *testing.T) {
	orig := ipv4(1000, 1, nil)
	if f, err := FragmentIPv4(orig, 1000); err != nil || len(f) != 1 || &f[0][0] != &orig[0] {
		t.Errorf("packet that fits: %v, not returned as it is", err)
	}
	df := ipv4(1000, 1, nil)
	df[6] |= 0x40
	packet.SetIPv4HeaderChecksum(df)
	if _, err := FragmentIPv4(df, 576); err != ErrDF {
		t.Errorf("DF: %v", err)
	}
	if f, err := FragmentIPv4(df, 1500); err != nil || len(f) != 1 {
		t.Errorf("DF that fits: %v", err)
	}
	if _, err := FragmentIPv4(orig, 27); err != ErrMTU {
		t.Errorf("mtu 27: %v", err)
	}
	if f, err := FragmentIPv4(orig, 28); err != nil || len(f) != 123 {
		t.Errorf("mtu 28: %d fragments, %v", len(f), err)
	}
	bad := append([]byte(nil), orig...)
	bad[10]++
	if _, err := FragmentIPv4(bad, 576); !errors.Is(err, ErrMalformed) || !errors.Is(err, packet.ErrIPv4Csum) {
		t.Errorf("bad checksum: %v", err)
	}
	// FragmentIPv4ID: new ID on fragments only.
	f, _ := FragmentIPv4ID(orig, 576, 0x4243)
	for _, p := range f {
		if packet.IPv4(p).ID() != 0x4243 {
			t.Errorf("ID %#x", packet.IPv4(p).ID())
		}
	}
	if f, _ := FragmentIPv4ID(orig, 1500, 0x4243); packet.IPv4(f[0]).ID() != 1 {
		t.Error("FragmentIPv4ID changed the ID of a packet that fits")
	}
}

// TestRefragment: fragmenting a fragment (RFC 791 §3.2: offsets add up,
// the last piece keeps MF) then reassembling gives the original.
func TestRefragment(t *testing.T) {
	orig := ipv4(3000, 9, nil)
	first, err := FragmentIPv4(orig, 1500)
	if err != nil {
		t.Fatal(err)
	}
	var all [][]byte
	for _, f := range first {
		again, err := FragmentIPv4(f, 576)
		if err != nil {
			t.Fatal(err)
		}
		checkFragments4(t, f, again, 576)
		all = append(all, again...)
	}
	got, err := feed(NewReassembler4(Config{}), all)
	if err != nil || len(got) != 1 || !bytes.Equal(got[0], orig) {
		t.Fatalf("%d datagrams, %v", len(got), err)
	}
}

// TestFragmentIPv6Unfragmentable: RFC 8200 §4.5: the Fragment header goes
// after Hop-by-Hop and Routing (and the Destination Options before
// Routing); Destination Options after them are fragmentable.
func TestFragmentIPv6Unfragmentable(t *testing.T) {
	for _, tc := range []struct {
		exts   [][2]int
		unfrag int
		nhOff  int
		nh     uint8
	}{
		{nil, 40, 6, packet.ProtoIPIP},
		{[][2]int{{nhHopByHop, 0}}, 48, 40, packet.ProtoIPIP},
		{[][2]int{{nhDestOpts, 0}}, 40, 6, nhDestOpts},
		{[][2]int{{nhHopByHop, 0}, {nhDestOpts, 1}, {nhRouting, 0}, {nhDestOpts, 0}}, 72, 64, nhDestOpts},
	} {
		orig := ipv6(2000, packet.ProtoIPIP, tc.exts...)
		frags, err := FragmentIPv6(orig, 1280, 42)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range frags {
			g := bytes.Clone(f[:tc.unfrag])
			g[tc.nhOff] = orig[tc.nhOff]
			if !bytes.Equal(g[8:], orig[8:tc.unfrag]) || f[tc.nhOff] != nhFragment || f[tc.unfrag] != tc.nh {
				t.Errorf("exts %v: fragment headers %x", tc.exts, f[:tc.unfrag+8])
			}
		}
		checkFragments6(t, frags, 1280, tc.unfrag, 42)
	}
}

func TestFragmentIPv6Errors(t *testing.T) {
	orig := ipv6(1000, packet.ProtoIPIP)
	if f, err := FragmentIPv6(orig, 1280, 1); err != nil || len(f) != 1 || &f[0][0] != &orig[0] {
		t.Errorf("packet that fits: %v", err)
	}
	if _, err := FragmentIPv6(orig, 55, 1); err != ErrMTU {
		t.Errorf("mtu 55: %v", err)
	}
	if f, err := FragmentIPv6(orig, 56, 1); err != nil || len(f) != 125 {
		t.Errorf("mtu 56: %d, %v", len(f), err)
	}
	if _, err := FragmentIPv6(frag6(1, 0, true, packet.ProtoUDP, make([]byte, 2000)), 1280, 1); !errors.Is(err, ErrMalformed) {
		t.Errorf("already a fragment: %v", err)
	}
	if _, err := FragmentIPv6(orig[:100], 1280, 1); !errors.Is(err, ErrMalformed) {
		t.Errorf("truncated: %v", err)
	}
	bad := ipv6(1000, packet.ProtoIPIP, [2]int{nhHopByHop, 0})
	bad[41] = 200
	if _, err := FragmentIPv6(bad, 576, 1); !errors.Is(err, ErrMalformed) {
		t.Errorf("extension header past the end: %v", err)
	}
	// RFC 7112: the first fragment must hold the whole header chain.
	long := ipv6(1000, packet.ProtoIPIP, [2]int{nhDestOpts, 10})
	if _, err := FragmentIPv6(long, 120, 1); err != ErrMTU {
		t.Errorf("chain longer than the first fragment: %v", err)
	}
	if _, err := FragmentIPv6(long, 136, 1); err != nil {
		t.Errorf("chain that just fits: %v", err)
	}
}

func TestIDs(t *testing.T) {
	s := SequentialIDs(0xffff, 0xffffffff)
	if a, b := s.Next16(), s.Next16(); a != 0xffff || b != 0 {
		t.Errorf("Next16 %#x %#x", a, b)
	}
	if a, b := s.Next32(), s.Next32(); a != 0xffffffff || b != 0 {
		t.Errorf("Next32 %#x %#x", a, b)
	}
	r := RandomIDs()
	seen := map[uint32]bool{}
	for range 1000 {
		seen[r.Next32()] = true
	}
	if len(seen) < 990 {
		t.Errorf("RandomIDs: %d distinct of 1000", len(seen))
	}
	if RandomIDs().Next32() == RandomIDs().Next32() && RandomIDs().Next32() == RandomIDs().Next32() {
		t.Error("RandomIDs are not seeded")
	}
}
