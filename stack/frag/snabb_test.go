package frag

// Byte-exact checks against Snabb lwAFTR's end-to-end vectors
// (/work/shared/conformance/snabb, see its README). The captures are read
// offline only; their addresses are not ours. Each case is looked up in
// manifest.tsv by its index, so the pcaps and the conf come from there, and
// the MTU and reassembly bounds from the conf.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lw4o6/lw4o6/internal/testenv"
	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcap"
)

type snabbCase struct {
	idx, name, conf              string
	in4, in6, out4, out6, note   string
	extMTU, intMTU               int // IPv4 side, IPv6 side
	extMaxFrags, intMaxFrags     int
	extMaxPackets, intMaxPackets int
}

func snabbDir(t testing.TB) string {
	dir := os.Getenv("LW4O6_SNABB_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "conformance", "snabb")
	}
	testenv.RequireFile(t, filepath.Join(dir, "manifest.tsv"), "Snabb vectors (set LW4O6_SNABB_DIR)")
	return dir
}

func snabb(t *testing.T, idx string) snabbCase {
	t.Helper()
	dir := snabbDir(t)
	b, err := os.ReadFile(filepath.Join(dir, "manifest.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 9 || f[0] != idx {
			continue
		}
		c := snabbCase{idx: f[0], name: f[2], conf: f[3], in4: f[4], in6: f[5], out4: f[6], out6: f[7], note: f[8]}
		conf := readConf(t, filepath.Join(dir, "confs", c.conf))
		leaf := func(path string, def int) int {
			v, ok := conf["softwire-config/"+path]
			if !ok {
				return def
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("%s: %s = %q", c.conf, path, v)
			}
			return n
		}
		// Defaults from the README: internal MTU 1460, external 1500,
		// max-fragments-per-packet 20.
		c.extMTU = leaf("external-interface/mtu", 1500)
		c.intMTU = leaf("internal-interface/mtu", 1460)
		c.extMaxFrags = leaf("external-interface/reassembly/max-fragments-per-packet", 20)
		c.intMaxFrags = leaf("internal-interface/reassembly/max-fragments-per-packet", 20)
		c.extMaxPackets = leaf("external-interface/reassembly/max-packets", 0)
		c.intMaxPackets = leaf("internal-interface/reassembly/max-packets", 0)
		t.Logf("case %s: %s (%s; ext mtu %d, int mtu %d)", c.idx, c.name, c.conf, c.extMTU, c.intMTU)
		return c
	}
	t.Fatalf("case %s not in manifest.tsv", idx)
	return snabbCase{}
}

// readConf reads the leaves of a Snabb conf as "block/block/leaf" → value
// (the first occurrence of each path).
func readConf(t *testing.T, name string) map[string]string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	var stack []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasSuffix(line, "{"):
			stack = append(stack, strings.Fields(line)[0])
		case line == "}":
			stack = stack[:len(stack)-1]
		case strings.HasSuffix(line, ";"):
			kv := strings.Fields(strings.TrimSuffix(line, ";"))
			if len(kv) == 2 {
				p := strings.Join(append(append([]string(nil), stack...), kv[0]), "/")
				if _, ok := m[p]; !ok {
					m[p] = kv[1]
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// readPcap returns the datagrams of a capture; "" (no capture) is none.
func readPcap(t *testing.T, name string) [][]byte {
	t.Helper()
	if name == "" {
		return nil
	}
	f, err := os.Open(filepath.Join(snabbDir(t), "pcaps", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out, err := pcap.ReadAll(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out
}

func equalPackets(t *testing.T, what string, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d packets, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("%s: packet %d differs\n got %x\nwant %x", what, i, got[i], want[i])
		}
	}
}

// TestSnabbIPv4Fragmentation: cases 18 and 19 ("from-B4 IPv4 fragmentation
// (2)/(3)"). The AFTR decapsulates (Snabb does not decrement the TTL on
// decapsulation) and fragments at the external MTU with a new ID from its
// counter, starting at 0x4243. Byte for byte.
func TestSnabbIPv4Fragmentation(t *testing.T) {
	for _, idx := range []string{"18", "19"} {
		t.Run(idx, func(t *testing.T) {
			c := snabb(t, idx)
			ids := SequentialIDs(0x4243, 0x42424243)
			var got [][]byte
			for _, b := range readPcap(t, c.in6) {
				var outer packet.IPv6
				inner, err := packet.Decapsulate(b, &outer)
				if err != nil {
					t.Fatal(err)
				}
				frags, err := FragmentIPv4ID(inner, c.extMTU, ids.Next16())
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, frags...)
			}
			want := readPcap(t, c.out4)
			equalPackets(t, c.out4, got, want)

			// And back: the expected fragments reassemble to the inner
			// packet (with Snabb's new ID).
			r := NewReassembler4(Config{MaxFragmentsPerPacket: c.extMaxFrags})
			var whole []byte
			for _, f := range want {
				out, err := r.Add(f)
				if err != nil {
					t.Fatal(err)
				}
				whole = out
			}
			var outer packet.IPv6
			inner, _ := packet.Decapsulate(readPcap(t, c.in6)[0], &outer)
			inner = append(packet.IPv4(nil), inner...)
			binary.BigEndian.PutUint16(inner[4:], 0x4243)
			packet.SetIPv4HeaderChecksum(inner)
			if !bytes.Equal(whole, inner) {
				t.Errorf("reassembled expected fragments differ from the original")
			}
		})
	}
}

// TestSnabbIPv6Fragmentation: cases 20 and 55 ("needs IPv6 fragmentation",
// "unfragmented IPv4 UDP -> outgoing IPv6 UDP fragments"). The AFTR
// decrements the TTL, encapsulates (outer source, destination and hop limit
// as in the expected capture; traffic class = TOS, flow label 0) and
// fragments at the internal MTU with IDs from 0x42424243. Byte for byte.
func TestSnabbIPv6Fragmentation(t *testing.T) {
	for _, idx := range []string{"20", "55"} {
		t.Run(idx, func(t *testing.T) {
			c := snabb(t, idx)
			want := readPcap(t, c.out6)
			w := want[0]
			src, dst, hlim := [16]byte(w[8:24]), [16]byte(w[24:40]), w[7]
			ids := SequentialIDs(0x4243, 0x42424243)
			var got [][]byte
			var encs [][]byte
			for _, b := range readPcap(t, c.in4) {
				buf := make([]byte, packet.IPv6HeaderLen+len(b))
				copy(buf[packet.IPv6HeaderLen:], b)
				inner, err := packet.ParseIPv4(buf[packet.IPv6HeaderLen:])
				if err != nil {
					t.Fatal(err)
				}
				if err := inner.DecTTL(); err != nil {
					t.Fatal(err)
				}
				enc := packet.Encapsulate(buf, packet.IPv6HeaderLen, src, dst, hlim)
				encs = append(encs, enc)
				frags, err := FragmentIPv6(enc, c.intMTU, ids.Next32())
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, frags...)
			}
			equalPackets(t, c.out6, got, want)

			r := NewReassembler6(Config{MaxFragmentsPerPacket: c.intMaxFrags})
			var whole []byte
			for _, f := range want {
				out, err := r.Add(f)
				if err != nil {
					t.Fatal(err)
				}
				whole = out
			}
			if !bytes.Equal(whole, encs[0]) {
				t.Errorf("reassembled expected fragments differ from the encapsulated packet")
			}
		})
	}
}

// TestSnabbIPv4Reassembly: case 14 ("from-internet IPv4 fragmented
// packets"). The reassembled datagram, after the AFTR's own rewrites (Snabb
// zeroes ID and flags of a reassembled packet; TTL decremented on
// encapsulation), encapsulated with the expected outer header, equals the
// expected IPv6 packet byte for byte.
func TestSnabbIPv4Reassembly(t *testing.T) {
	c := snabb(t, "14")
	r := NewReassembler4(Config{MaxFragmentsPerPacket: c.extMaxFrags, MaxPackets: c.extMaxPackets})
	in := readPcap(t, c.in4)
	var got [][]byte
	for i, b := range in {
		out, err := r.Add(b)
		if err != nil {
			t.Fatalf("fragment %d: %v", i, err)
		}
		if out != nil {
			if i != len(in)-1 {
				t.Fatalf("complete after fragment %d of %d", i, len(in))
			}
			got = append(got, out)
		}
	}
	want := readPcap(t, c.out6)
	if len(got) != 1 || len(want) != 1 {
		t.Fatalf("%d reassembled, %d expected", len(got), len(want))
	}
	p := packet.IPv4(got[0])
	// What Reassembler4 promises: the first fragment's header, total
	// length fixed, MF and offset cleared, ID kept.
	if p.ID() != packet.IPv4(in[0]).ID() || p.IsFragment() || p.TotalLen() != len(p) {
		t.Fatalf("reassembled header %x", []byte(p[:20]))
	}
	w := want[0]
	buf := make([]byte, packet.IPv6HeaderLen+len(p))
	copy(buf[packet.IPv6HeaderLen:], p)
	q := packet.IPv4(buf[packet.IPv6HeaderLen:])
	q[4], q[5], q[6], q[7] = 0, 0, 0, 0 // Snabb: ID and flags 0
	packet.SetIPv4HeaderChecksum(q)
	if err := q.DecTTL(); err != nil {
		t.Fatal(err)
	}
	enc := packet.Encapsulate(buf, packet.IPv6HeaderLen, [16]byte(w[8:24]), [16]byte(w[24:40]), w[7])
	if !bytes.Equal(enc, w) {
		t.Errorf("got  %x\nwant %x", enc, w)
	}
	if s := r.Stats(); s.Reassembled != 1 || s.Fragments != 3 || s.InFlight != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestSnabbIPv6Reassembly: cases 22, 25 ("IPv6 reassembly") and 56 ("IPv6
// incoming UDP fragments -> unfragmented IPv4"). The reassembled packet is
// the first fragment's header with Next Header 4 and the payload length
// fixed, followed by exactly the expected IPv4 output (Snabb does not touch
// the inner packet on decapsulation).
func TestSnabbIPv6Reassembly(t *testing.T) {
	for _, idx := range []string{"22", "25", "56"} {
		t.Run(idx, func(t *testing.T) {
			c := snabb(t, idx)
			r := NewReassembler6(Config{MaxFragmentsPerPacket: c.intMaxFrags, MaxPackets: c.intMaxPackets})
			in := readPcap(t, c.in6)
			var got [][]byte
			for i, b := range in {
				out, err := r.Add(b)
				if err != nil {
					t.Fatalf("fragment %d: %v", i, err)
				}
				if out != nil {
					got = append(got, out)
				}
			}
			want := readPcap(t, c.out4)
			if len(got) != 1 || len(want) != 1 {
				t.Fatalf("%d reassembled, %d expected", len(got), len(want))
			}
			exp := append(append([]byte(nil), in[0][:packet.IPv6HeaderLen]...), want[0]...)
			exp[6] = packet.ProtoIPIP
			binary.BigEndian.PutUint16(exp[4:], uint16(len(want[0])))
			if !bytes.Equal(got[0], exp) {
				t.Errorf("got  %x\nwant %x", got[0], exp)
			}
			var outer packet.IPv6
			if inner, err := packet.Decapsulate(got[0], &outer); err != nil || !bytes.Equal(inner, want[0]) {
				t.Errorf("decapsulated: %v", err)
			}
		})
	}
}

// TestSnabbMaxFragments1: case 24 ("IPv6 reassembly (with max frags set to
// 1)"): the second fragment exceeds the bound, the datagram is discarded,
// nothing comes out (both expected captures are empty).
func TestSnabbMaxFragments1(t *testing.T) {
	c := snabb(t, "24")
	if c.intMaxFrags != 1 || c.out4 != "" || c.out6 != "" {
		t.Fatalf("case 24 changed: %+v", c)
	}
	r := NewReassembler6(Config{MaxFragmentsPerPacket: c.intMaxFrags, MaxPackets: c.intMaxPackets})
	in := readPcap(t, c.in6)
	for i, b := range in {
		out, err := r.Add(b)
		if out != nil {
			t.Fatalf("fragment %d gave a packet", i)
		}
		if i < len(in)-1 && err != nil || i == len(in)-1 && !errors.Is(err, ErrTooManyFragments) {
			t.Fatalf("fragment %d: %v", i, err)
		}
	}
	if s := r.Stats(); s.TooManyFragments != 1 || s.InFlight != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestSnabbSignedFragmentIDs: case 1 (fragment IDs with the high bit set).
// Snabb's expected output is empty only because the source is not bound
// (the core's drop, not ours); here each of the five datagrams must
// reassemble into a well-formed IPv4-in-IPv6 packet, unmixed with the
// others although their contents are identical.
func TestSnabbSignedFragmentIDs(t *testing.T) {
	c := snabb(t, "1")
	r := NewReassembler6(Config{MaxFragmentsPerPacket: c.intMaxFrags})
	n := 0
	for i, b := range readPcap(t, c.in6) {
		out, err := r.Add(b)
		if err != nil {
			t.Fatalf("fragment %d: %v", i, err)
		}
		if out == nil {
			continue
		}
		n++
		var outer packet.IPv6
		inner, err := packet.Decapsulate(out, &outer)
		if err != nil || len(inner) != 1228 || inner.IsFragment() {
			t.Fatalf("datagram %d: %v (%d octets)", n, err, len(inner))
		}
	}
	if n != 5 {
		t.Fatalf("%d datagrams, want 5", n)
	}
}
