package frag

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/packet"
)

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	fill(b, seed)
	return b
}

func TestReassembleOutOfOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	orig4 := ipv4(5000, 77, nil)
	frags4, _ := FragmentIPv4(orig4, 576)
	orig6 := ipv6(5000, packet.ProtoIPIP)
	frags6, _ := FragmentIPv6(orig6, 1280, 0x80000001)
	for _, order := range []string{"reverse", "shuffle", "last-first"} {
		r4, r6 := NewReassembler4(Config{}), NewReassembler6(Config{})
		for _, c := range []struct {
			r     adder
			frags [][]byte
			orig  []byte
		}{{r4, frags4, orig4}, {r6, frags6, orig6}} {
			in := append([][]byte(nil), c.frags...)
			switch order {
			case "reverse":
				for i, j := 0, len(in)-1; i < j; i, j = i+1, j-1 {
					in[i], in[j] = in[j], in[i]
				}
			case "shuffle":
				in = shuffled(rng, in)
			case "last-first":
				in = append([][]byte{in[len(in)-1]}, in[:len(in)-1]...)
			}
			got, err := feed(c.r, in)
			if err != nil || len(got) != 1 || !bytes.Equal(got[0], c.orig) {
				t.Fatalf("%s: %d datagrams, %v", order, len(got), err)
			}
		}
		if s := r4.Stats(); s.Reassembled != 1 || s.Fragments != uint64(len(frags4)) || s.InFlight != 0 {
			t.Errorf("IPv4 stats %+v", s)
		}
		if s := r6.Stats(); s.Reassembled != 1 || s.Fragments != uint64(len(frags6)) || s.InFlight != 0 {
			t.Errorf("IPv6 stats %+v", s)
		}
	}
}

// TestReassembleInterleaved: datagrams that differ only in ID (IPv4: also
// protocol; IPv6: ID) are kept apart (RFC 791 §3.2, RFC 8200 §4.5).
func TestReassembleInterleaved(t *testing.T) {
	r := NewReassembler4(Config{})
	a, _ := FragmentIPv4(ipv4(2000, 1, nil), 576)
	b, _ := FragmentIPv4(ipv4(2000, 2, nil), 576)
	var in [][]byte
	for i := range a {
		in = append(in, a[i], b[i])
	}
	got, err := feed(r, in)
	if err != nil || len(got) != 2 || packet.IPv4(got[0]).ID() != 1 || packet.IPv4(got[1]).ID() != 2 {
		t.Fatalf("%d datagrams, %v", len(got), err)
	}
}

// TestReassembleDuplicates: an exact duplicate is dropped alone (RFC 8200
// §4.5 allows it) and the datagram still completes.
func TestReassembleDuplicates(t *testing.T) {
	orig4 := ipv4(2000, 5, nil)
	f4, _ := FragmentIPv4(orig4, 576)
	orig6 := ipv6(2000, packet.ProtoUDP)
	f6, _ := FragmentIPv6(orig6, 1280, 5)
	for _, c := range []struct {
		r    interface{ Stats() Stats }
		f    [][]byte
		orig []byte
	}{{NewReassembler4(Config{}), f4, orig4}, {NewReassembler6(Config{}), f6, orig6}} {
		a := c.r.(adder)
		if out, err := a.Add(c.f[0]); out != nil || err != nil {
			t.Fatalf("first: %v", err)
		}
		if _, err := a.Add(c.f[0]); err != ErrDuplicate {
			t.Fatalf("duplicate: %v", err)
		}
		got, err := feed(a, c.f[1:])
		if err != nil || len(got) != 1 || !bytes.Equal(got[0], c.orig) {
			t.Fatalf("%d datagrams, %v", len(got), err)
		}
		if s := c.r.Stats(); s.Duplicate != 1 || s.Reassembled != 1 {
			t.Errorf("stats %+v", s)
		}
	}
	// A duplicate last fragment that is the first to say where the datagram
	// ends completes it.
	r := NewReassembler4(Config{})
	d := pattern(16, 1)
	feed(r, [][]byte{frag4(9, 0, true, d[:8]), frag4(9, 8, true, d[8:])})
	if out, err := r.Add(frag4(9, 8, false, d[8:])); err != nil || len(out) != 36 {
		t.Errorf("duplicate last fragment: %d, %v", len(out), err)
	}
}

// TestReassembleOverlap4: RFC 1858 / RFC 5722 spirit for IPv4: an overlap
// with identical octets is accepted, one with different octets discards
// the whole datagram.
func TestReassembleOverlap4(t *testing.T) {
	d := pattern(32, 3)
	r := NewReassembler4(Config{})
	got, err := feed(r, [][]byte{
		frag4(1, 8, true, d[8:24]),
		frag4(1, 0, true, d[0:16]), // overlaps [8,16) identically
		frag4(1, 0, true, d[0:24]), // fully covered: a duplicate in effect
	})
	if err != ErrDuplicate || len(got) != 0 {
		t.Fatalf("covered fragment: %v", err)
	}
	out, err := r.Add(frag4(1, 16, false, d[16:32]))
	if err != nil || !bytes.Equal(packet.IPv4(out).Payload(), d) {
		t.Fatalf("identical overlaps: %v", err)
	}
	if s := r.Stats(); s.Fragments != 3 || s.Reassembled != 1 || s.Duplicate != 1 {
		t.Errorf("stats %+v", s)
	}

	bad := append([]byte(nil), d...)
	bad[12] ^= 0xff
	if _, err := feed(r, [][]byte{frag4(2, 0, true, d[0:16]), frag4(2, 8, true, bad[8:24])}); err != ErrOverlap {
		t.Fatalf("different octets: %v", err)
	}
	if s := r.Stats(); s.InFlight != 0 || s.Overlap != 1 {
		t.Errorf("datagram not discarded: %+v", s)
	}
	// The rest of the discarded datagram does not complete it.
	if got, err := feed(r, [][]byte{frag4(2, 16, false, d[16:32])}); err != nil || len(got) != 0 {
		t.Errorf("after discard: %d, %v", len(got), err)
	}
}

// TestReassembleOverlap6: RFC 5722 §4: any overlap in IPv6 (other than an
// exact duplicate) discards the whole packet, even with identical octets.
func TestReassembleOverlap6(t *testing.T) {
	d := pattern(32, 4)
	r := NewReassembler6(Config{})
	_, err := feed(r, [][]byte{
		frag6(1, 0, true, packet.ProtoUDP, d[0:16]),
		frag6(1, 8, true, packet.ProtoUDP, d[8:24]),
	})
	if err != ErrOverlap {
		t.Fatalf("identical overlap: %v", err)
	}
	_, err = feed(r, [][]byte{
		frag6(2, 0, true, packet.ProtoUDP, d[0:16]),
		frag6(2, 0, true, packet.ProtoUDP, pattern(16, 9)),
	})
	if err != ErrOverlap {
		t.Fatalf("same place, different octets: %v", err)
	}
	if s := r.Stats(); s.InFlight != 0 || s.Overlap != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestReassembleTooManyFragments(t *testing.T) {
	orig := ipv4(1000, 3, nil)
	frags, _ := FragmentIPv4(orig, 100) // 13 fragments
	r := NewReassembler4(Config{MaxFragmentsPerPacket: 12})
	_, err := feed(r, frags)
	if err != ErrTooManyFragments {
		t.Fatalf("got %v", err)
	}
	if s := r.Stats(); s.InFlight != 0 || s.TooManyFragments != 1 {
		t.Errorf("stats %+v", s)
	}
	r = NewReassembler4(Config{MaxFragmentsPerPacket: 13})
	if got, err := feed(r, frags); err != nil || len(got) != 1 {
		t.Fatalf("at the bound: %v", err)
	}
	// Default: 20.
	frags, _ = FragmentIPv4(ipv4(1000, 3, nil), 68) // 21 fragments
	if _, err := feed(NewReassembler4(Config{}), frags); err != ErrTooManyFragments || len(frags) != 21 {
		t.Fatalf("default bound: %v (%d fragments)", err, len(frags))
	}
}

func TestReassembleTableFull(t *testing.T) {
	clk := newClock()
	var frags [][][]byte
	for id := range 3 {
		f, _ := FragmentIPv6(ipv6(2000, packet.ProtoUDP), 1280, uint32(id))
		frags = append(frags, f)
	}
	// Default policy: the oldest datagram is evicted.
	r := NewReassembler6(Config{MaxPackets: 2, Now: clk.Now})
	for id := range 3 {
		if _, err := r.Add(frags[id][0]); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second)
	}
	if s := r.Stats(); s.InFlight != 2 || s.Evicted != 1 || s.Capacity != 2 {
		t.Errorf("stats %+v", s)
	}
	for _, c := range []struct{ id, want int }{{1, 1}, {2, 1}, {0, 0}} {
		id, want := c.id, c.want
		got, err := feed(r, frags[id][1:])
		if err != nil || len(got) != want {
			t.Errorf("datagram %d: %d out, %v", id, len(got), err)
		}
	}
	// DropNewWhenFull: the new one is refused.
	r = NewReassembler6(Config{MaxPackets: 2, DropNewWhenFull: true, Now: clk.Now})
	feed(r, [][]byte{frags[0][0], frags[1][0]})
	if _, err := r.Add(frags[2][0]); err != ErrTableFull {
		t.Fatalf("third: %v", err)
	}
	if got, err := feed(r, frags[0][1:]); err != nil || len(got) != 1 {
		t.Fatalf("first datagram: %v", err)
	}
	if s := r.Stats(); s.TableFull != 1 || s.Evicted != 0 {
		t.Errorf("stats %+v", s)
	}
	// A full table whose oldest entry has expired makes room by expiring.
	r = NewReassembler6(Config{MaxPackets: 1, DropNewWhenFull: true, Now: clk.Now, Timeout: 10 * time.Second})
	r.Add(frags[0][0])
	clk.Advance(10 * time.Second)
	if _, err := r.Add(frags[1][0]); err != nil {
		t.Fatal(err)
	}
	if s := r.Stats(); s.Timeouts != 1 || s.TableFull != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestReassembleTimeout(t *testing.T) {
	clk := newClock()
	r := NewReassembler4(Config{Now: clk.Now})
	frags, _ := FragmentIPv4(ipv4(2000, 8, nil), 576)
	other, _ := FragmentIPv4(ipv4(2000, 9, nil), 576)
	r.Add(frags[0])
	clk.Advance(20 * time.Second)
	r.Add(other[0])
	clk.Advance(10*time.Second - 1)
	if n := r.Expire(); n != 0 {
		t.Fatalf("expired %d before 30 s", n)
	}
	clk.Advance(1)
	if n := r.Expire(); n != 1 {
		t.Fatalf("expired %d at 30 s", n)
	}
	// Lazily too: the rest of an expired datagram starts a new one.
	r2 := NewReassembler4(Config{Now: clk.Now, Timeout: 5 * time.Second})
	r2.Add(frags[0])
	clk.Advance(5 * time.Second)
	if got, err := feed(r2, frags[1:]); err != nil || len(got) != 0 {
		t.Fatalf("completed with an expired fragment: %v", err)
	}
	if s := r2.Stats(); s.Timeouts != 1 || s.InFlight != 1 {
		t.Errorf("stats %+v", s)
	}
	if s := r.Stats(); s.Timeouts != 1 || s.InFlight != 1 {
		t.Errorf("stats %+v", s)
	}
	clk.Advance(time.Hour)
	r.Expire()
	if got, err := feed(r, other[1:]); err != nil || len(got) != 0 {
		t.Fatalf("completed after expiry: %v", err)
	}
}

// Test65535: RFC 8200 §4.5 and RFC 791: no datagram over 65535 octets.
func Test65535(t *testing.T) {
	r4 := NewReassembler4(Config{})
	// Offset 65512 + 24 octets + 20 = 65556.
	if _, err := r4.Add(frag4(1, 65512, false, make([]byte, 24))); err != ErrTooBig {
		t.Fatalf("IPv4 past 65535: %v", err)
	}
	if _, err := r4.Add(frag4(1, 65512, false, make([]byte, 3))); err != nil {
		t.Fatalf("IPv4 at 65535: %v", err)
	}
	// The largest IPv4 datagram reassembles.
	big := ipv4(65535, 2, nil)
	frags, _ := FragmentIPv4(big, 9000)
	if got, err := feed(r4, frags); err != nil || len(got) != 1 || !bytes.Equal(got[0], big) {
		t.Fatalf("65535-octet datagram: %v", err)
	}
	// Fits with a 20-octet header, not with the first fragment's options.
	first := ipv4(60+8, 3, bytes.Repeat([]byte{1}, 40))
	first[6] = 0x20
	packet.SetIPv4HeaderChecksum(first)
	r4.Add(first)
	if _, err := r4.Add(frag4(3, 65512, false, make([]byte, 3))); err != nil {
		t.Fatalf("IPv4 last fragment: %v", err)
	}
	gap := 8
	var err error
	for gap < 65512 && err == nil {
		n := min(8000, 65512-gap)
		_, err = r4.Add(frag4(3, gap, true, make([]byte, n)))
		gap += n
	}
	if err != ErrTooBig {
		t.Fatalf("IPv4 header + payload past 65535: %v", err)
	}

	r6 := NewReassembler6(Config{})
	if _, err := r6.Add(frag6(1, 65528, false, packet.ProtoUDP, make([]byte, 8))); err != ErrTooBig {
		t.Fatalf("IPv6 past 65535: %v", err)
	}
	if _, err := r6.Add(frag6(1, 65528, false, packet.ProtoUDP, make([]byte, 7))); err != nil {
		t.Fatalf("IPv6 at 65535: %v", err)
	}
	if s := r4.Stats(); s.TooBig != 2 {
		t.Errorf("IPv4 stats %+v", s)
	}
}

// TestAtomicFragment: RFC 6946 §4 / RFC 8200 §4.5: offset 0 with M = 0 is
// processed as a whole packet, apart from any datagram with the same ID.
func TestAtomicFragment(t *testing.T) {
	r := NewReassembler6(Config{})
	d := pattern(64, 5)
	pending := frag6(7, 0, true, packet.ProtoUDP, d[:32])
	if out, err := r.Add(pending); out != nil || err != nil {
		t.Fatal(err)
	}
	out, err := r.Add(frag6(7, 0, false, packet.ProtoUDP, d))
	if err != nil {
		t.Fatal(err)
	}
	var p packet.IPv6
	if err := packet.ParseIPv6(out, &p); err != nil || p.NextHeader != packet.ProtoUDP || !bytes.Equal(p.Payload, d) || len(out) != 40+64 {
		t.Fatalf("atomic fragment: %v %x", err, out)
	}
	got, err := feed(r, [][]byte{frag6(7, 32, false, packet.ProtoUDP, d[32:])})
	if err != nil || len(got) != 1 || !bytes.Equal(got[0][40:], d) {
		t.Fatalf("pending datagram disturbed: %v", err)
	}
	if s := r.Stats(); s.Atomic != 1 || s.Reassembled != 1 {
		t.Errorf("stats %+v", s)
	}
	// After extension headers: the Next Header before it is restored.
	orig := ipv6(100, packet.ProtoIPIP, [2]int{nhHopByHop, 0})
	atomic := make([]byte, len(orig)+8)
	copy(atomic, orig[:48])
	atomic[40] = nhFragment
	atomic[48] = packet.ProtoIPIP
	copy(atomic[56:], orig[48:])
	binary.BigEndian.PutUint16(atomic[4:], uint16(len(atomic)-40))
	if out, err := r.Add(atomic); err != nil || !bytes.Equal(out, orig) {
		t.Fatalf("atomic after hop-by-hop: %v\n got %x\nwant %x", err, out, orig)
	}
}

// TestNotFragment: packets that are not fragments pass through unchanged.
func TestNotFragment(t *testing.T) {
	p4 := ipv4(100, 1, nil)
	if out, err := NewReassembler4(Config{}).Add(append(p4, 0, 0)); err != nil || !bytes.Equal(out, p4) {
		t.Errorf("IPv4: %v", err)
	}
	p6 := ipv6(100, packet.ProtoUDP, [2]int{nhDestOpts, 0})
	if out, err := NewReassembler6(Config{}).Add(p6); err != nil || !bytes.Equal(out, p6) {
		t.Errorf("IPv6: %v", err)
	}
}

func TestReassembleMalformed(t *testing.T) {
	d := pattern(64, 6)
	for _, c := range []struct {
		name string
		in   [][]byte
	}{
		{"not a multiple of 8", [][]byte{frag4(1, 0, true, d[:12])}},
		{"empty non-final", [][]byte{frag4(1, 8, true, nil)}},
		{"truncated", [][]byte{frag4(1, 0, true, d[:16])[:30]}},
		{"two ends", [][]byte{frag4(1, 8, false, d[:8]), frag4(1, 16, false, d[:8])}},
		{"data past the end", [][]byte{frag4(1, 8, false, d[:8]), frag4(1, 16, true, d[:8])}},
		{"end before data", [][]byte{frag4(1, 16, true, d[:8]), frag4(1, 8, false, d[:8])}},
	} {
		r := NewReassembler4(Config{})
		if _, err := feed(r, c.in); !errors.Is(err, ErrMalformed) {
			t.Errorf("IPv4 %s: %v", c.name, err)
		}
		if s := r.Stats(); s.InFlight != 0 || s.Malformed != 1 {
			t.Errorf("IPv4 %s: stats %+v", c.name, s)
		}
	}
	cut := frag6(1, 0, true, nhDestOpts, d[:16])
	cut[49] = 2 // a 24-octet Destination Options header in 16 octets
	for _, c := range []struct {
		name string
		in   [][]byte
	}{
		{"not a multiple of 8", [][]byte{frag6(1, 0, true, packet.ProtoUDP, d[:12])}},
		{"two ends", [][]byte{frag6(1, 8, false, 17, d[:8]), frag6(1, 16, false, 17, d[:8])}},
		{"truncated Fragment header", [][]byte{frag6(1, 0, true, 17, nil)[:44]}},
		{"payload length past the end", [][]byte{frag6(1, 0, true, 17, d[:8])[:50]}},
		{"second Fragment header", [][]byte{frag6(1, 0, true, nhFragment, d[:16])}},
		{"RFC 7112 chain cut", [][]byte{cut}},
		{"IPv4", [][]byte{frag4(1, 0, true, d[:8])}},
	} {
		r := NewReassembler6(Config{})
		if _, err := feed(r, c.in); !errors.Is(err, ErrMalformed) {
			t.Errorf("IPv6 %s: %v", c.name, err)
		}
		if s := r.Stats(); s.InFlight != 0 || s.Malformed != 1 {
			t.Errorf("IPv6 %s: stats %+v", c.name, s)
		}
	}
}

// TestReassembleECN: RFC 3168 §5.3: CE in any fragment gives CE; Not-ECT
// mixed with ECT is dropped.
func TestReassembleECN(t *testing.T) {
	d := pattern(16, 7)
	withTOS := func(b []byte, ecn byte) []byte {
		b[1] = 0xb8 | ecn // DSCP EF
		packet.SetIPv4HeaderChecksum(b)
		return b
	}
	r := NewReassembler4(Config{})
	got, err := feed(r, [][]byte{withTOS(frag4(1, 0, true, d[:8]), 2), withTOS(frag4(1, 8, false, d[8:]), 3)})
	if err != nil || len(got) != 1 || got[0][1] != 0xbb {
		t.Fatalf("ECT + CE: %v", err)
	}
	if _, err := packet.ParseIPv4(got[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := feed(r, [][]byte{withTOS(frag4(2, 0, true, d[:8]), 0), withTOS(frag4(2, 8, false, d[8:]), 1)}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Not-ECT + ECT: %v", err)
	}
	r6 := NewReassembler6(Config{})
	a, b := frag6(3, 0, true, 17, d[:8]), frag6(3, 8, false, 17, d[8:])
	a[1] |= 0x20 // ECT(0)
	b[1] |= 0x30 // CE
	if got, err := feed(r6, [][]byte{a, b}); err != nil || len(got) != 1 || got[0][1]&0x30 != 0x30 {
		t.Fatalf("IPv6 ECT + CE: %v", err)
	}
}

// TestReassembleConcurrent runs many goroutines through one reassembler of
// each family (go test -race).
func TestReassembleConcurrent(t *testing.T) {
	r4, r6 := NewReassembler4(Config{}), NewReassembler6(Config{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				id := g*1000 + i
				o4 := ipv4(3000, uint16(id), nil)
				f4, _ := FragmentIPv4(o4, 1000)
				o6 := ipv6(3000, packet.ProtoIPIP)
				f6, _ := FragmentIPv6(o6, 1280, uint32(id))
				g4, err4 := feed(r4, f4)
				g6, err6 := feed(r6, f6)
				if err4 != nil || err6 != nil || len(g4) != 1 || len(g6) != 1 || !bytes.Equal(g4[0], o4) || !bytes.Equal(g6[0], o6) {
					errs <- fmt.Errorf("datagram %d: %v %v", id, err4, err6)
					return
				}
				r4.Stats()
				r6.Expire()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s := r4.Stats(); s.Reassembled != 400 || s.InFlight != 0 {
		t.Errorf("stats %+v", s)
	}
}
