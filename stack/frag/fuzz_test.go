package frag

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/packet"
)

// Fuzz input: records of [ctl][length: 2 octets][packet]. ctl bit 0
// advances the clock by 20 s and expires both tables first; bit 1 fixes
// the packet's IPv4 total length or IPv6 payload length; bit 2 fixes the
// IPv4 header checksum (so mutated headers get past validation). A packet
// goes to the reassembler of its version, anything else to both.
const (
	ctlTick = 1 << iota
	ctlFixLen
	ctlFixCsum
)

type record struct {
	ctl byte
	pkt []byte
}

func encodeRecords(recs []record) []byte {
	var b []byte
	for _, r := range recs {
		b = append(b, r.ctl, byte(len(r.pkt)>>8), byte(len(r.pkt)))
		b = append(b, r.pkt...)
	}
	return b
}

func FuzzReassemble(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		clk := newClock()
		cfg := Config{MaxFragmentsPerPacket: 8, MaxPackets: 4, Now: clk.Now}
		r4, r6 := NewReassembler4(cfg), NewReassembler6(cfg)
		for len(data) >= 3 {
			ctl, n := data[0], int(binary.BigEndian.Uint16(data[1:]))
			data = data[3:]
			n = min(n, len(data))
			pkt := append([]byte(nil), data[:n]...)
			data = data[n:]
			if ctl&ctlTick != 0 {
				clk.Advance(20 * time.Second)
				r4.Expire()
				r6.Expire()
			}
			fixup(pkt, ctl)
			v := byte(0)
			if len(pkt) > 0 {
				v = pkt[0] >> 4
			}
			if v != 6 {
				if out, err := r4.Add(pkt); err == nil && out != nil {
					checkIPv4(t, out)
				}
			}
			if v != 4 {
				if out, err := r6.Add(pkt); err == nil && out != nil {
					checkIPv6(t, out)
				}
			}
			for _, s := range []Stats{r4.Stats(), r6.Stats()} {
				if s.InFlight > cfg.MaxPackets {
					t.Fatalf("%d in flight", s.InFlight)
				}
			}
		}
	})
}

func fixup(pkt []byte, ctl byte) {
	switch {
	case len(pkt) >= packet.IPv4HeaderLen && pkt[0]>>4 == 4:
		if ctl&ctlFixLen != 0 {
			binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		}
		if ihl := int(pkt[0]&0xf) * 4; ctl&ctlFixCsum != 0 && ihl >= packet.IPv4HeaderLen && ihl <= len(pkt) {
			packet.SetIPv4HeaderChecksum(pkt)
		}
	case len(pkt) >= packet.IPv6HeaderLen && pkt[0]>>4 == 6 && ctl&ctlFixLen != 0:
		binary.BigEndian.PutUint16(pkt[4:], uint16(len(pkt)-packet.IPv6HeaderLen))
	}
}

func checkIPv4(t *testing.T, out []byte) {
	p, err := packet.ParseIPv4(out)
	if err != nil || len(p) != len(out) || p.IsFragment() {
		t.Fatalf("IPv4 output %x: %v", out, err)
	}
}

func checkIPv6(t *testing.T, out []byte) {
	var p packet.IPv6
	if err := packet.ParseIPv6(out, &p); err != nil || len(p.Packet) != len(out) {
		t.Fatalf("IPv6 output %x: %v", out, err)
	}
}

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/fuzz/FuzzReassemble")

// TestWriteFuzzSeeds regenerates the seed corpus with -update-seeds.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("run with -update-seeds to rewrite the seed corpus")
	}
	fix := byte(ctlFixLen | ctlFixCsum)
	recs := func(ctl byte, pkts ...[]byte) []record {
		var r []record
		for _, p := range pkts {
			r = append(r, record{ctl, p})
		}
		return r
	}
	f4, _ := FragmentIPv4(ipv4(300, 1, nil), 96)
	f4opt, _ := FragmentIPv4(ipv4(300, 2, []byte{0x94, 4, 0, 0, 0x07, 7, 4, 0, 0, 0, 0}), 100)
	f6, _ := FragmentIPv6(ipv6(300, packet.ProtoIPIP), 128, 0x80000001)
	f6ext, _ := FragmentIPv6(ipv6(300, packet.ProtoUDP, [2]int{nhHopByHop, 0}, [2]int{nhRouting, 0}, [2]int{nhDestOpts, 0}), 160, 3)
	d := pattern(32, 1)
	seeds := map[string][]record{
		"ipv4-in-order": recs(fix, f4...),
		"ipv4-reversed": recs(fix, f4[3], f4[2], f4[1], f4[0]),
		"ipv4-options":  recs(fix, f4opt...),
		"ipv4-overlap":  recs(fix, frag4(5, 0, true, d[:16]), frag4(5, 8, true, d[8:24]), frag4(5, 16, false, d[16:])),
		"ipv4-dup":      recs(fix, f4[0], f4[0], f4[1], f4[2], f4[3]),
		"ipv6-in-order": recs(fix, f6...),
		"ipv6-shuffled": recs(fix, f6[2], f6[0], f6[3], f6[1]),
		"ipv6-ext":      recs(fix, f6ext...),
		"ipv6-atomic":   recs(fix, frag6(9, 0, false, packet.ProtoUDP, d)),
		"ipv6-overlap":  recs(fix, frag6(5, 0, true, 17, d[:16]), frag6(5, 8, false, 17, d[8:])),
		"mixed-timeout": append(recs(fix, f4[0], f6[0]), append(recs(fix|ctlTick, f4[1], f6[1]), recs(fix|ctlTick, f4[2:]...)...)...),
		"table-full": recs(fix, frag4(1, 0, true, d[:8]), frag4(2, 0, true, d[:8]), frag4(3, 0, true, d[:8]),
			frag4(4, 0, true, d[:8]), frag4(5, 0, true, d[:8]), frag4(1, 8, false, d[8:16])),
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzReassemble")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, r := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", encodeRecords(r))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
