package aftr

// Snabb lwAFTR's end-to-end vectors (/work/shared/conformance/snabb, see
// its README): every case of manifest.tsv is replayed through Replay, the
// code path of `lw4o6-aftr check`, with the case's configuration read as is
// and the Snabb profile, and each side's output is compared with the
// expected capture byte for byte. The captures are read offline only;
// their addresses are not ours.
//
// Where we deliberately differ from Snabb, the difference is a knob and
// SnabbProfile sets Snabb's value; the comparison is never loosened:
//
//	HopLimit 255                       (ours: 64, RFC 2473 §6.3)
//	DecapDecrementsTTL false           (ours: true, RFC 1812 §5.3.1)
//	TimeExceededQuotesDecrementedTTL   (ours: the datagram as received)
//	ICMPv4ErrorTTL 255                 (ours: 64)
//	ICMPv4ErrorMaxLen 576, ICMPv6ErrorMaxLen 1280 (the same as ours)
//	ZeroReassembledIDAndFlags          (ours: keep ID and DF, RFC 791)
//	NewIPv4FragmentIDs                 (ours: the datagram's own ID, RFC 791 §3.2)
//	FragmentIDs SequentialIDs(0x4243, 0x42424243) (ours: random, RFC 7739)
//	EchoByPort0                        (ours: the identifier, RFC 7596 §8.1)
//	UnhairpinnedToInternet             (ours: drop B4-to-B4 packets when hairpinning is off)
//	IgnoreIPv4HeaderChecksum           (ours: verify, RFC 1812 §5.2.2; case 80 pings with a bad one)
//
// Snabb's configuration is read as is (LoadSnabb). The four
// needs-pflang-filter DROP cases run too: the filter subset of filter.go
// compiles their "len < 0".

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/internal/testenv"
	"github.com/lw4o6/lw4o6/stack/pcap"
)

type snabbCase struct {
	idx, class, name, conf     string
	in4, in6, out4, out6, note string
}

func snabbDir(t testing.TB) string {
	dir := os.Getenv("LW4O6_SNABB_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "conformance", "snabb")
	}
	testenv.RequireFile(t, filepath.Join(dir, "manifest.tsv"), "Snabb vectors (set LW4O6_SNABB_DIR)")
	return dir
}

func snabbCases(t testing.TB, dir string) []snabbCase {
	f, err := os.Open(filepath.Join(dir, "manifest.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cs []snabbCase
	sc := bufio.NewScanner(f)
	for first := true; sc.Scan(); first = false {
		if first || strings.TrimSpace(sc.Text()) == "" {
			continue // the header
		}
		c := strings.Split(sc.Text(), "\t")
		if len(c) < 8 {
			t.Fatalf("manifest.tsv: short row %q", sc.Text())
		}
		for len(c) < 9 {
			c = append(c, "")
		}
		cs = append(cs, snabbCase{c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cs
}

// snabbConfig is the configuration check builds for --conf path
// --profile snabb.
func snabbConfig(t testing.TB, path string) Config {
	t.Helper()
	cfg := DefaultConfig()
	if err := ApplyProfile(&cfg, "snabb"); err != nil {
		t.Fatal(err)
	}
	if err := LoadSnabb(path, &cfg); err != nil {
		t.Fatalf("LoadSnabb: %v", err)
	}
	return cfg
}

func openPcap(t testing.TB, dir, name string) io.Reader {
	t.Helper()
	if name == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "pcaps", name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}

func readPcap(t testing.TB, r io.Reader) [][]byte {
	t.Helper()
	out, err := pcap.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSnabbConformance(t *testing.T) {
	dir := snabbDir(t)
	cases := snabbCases(t, dir)
	if len(cases) != 55 {
		t.Errorf("manifest.tsv has %d cases, want 55", len(cases))
	}
	for _, c := range cases {
		t.Run(c.idx+"-"+c.class, func(t *testing.T) {
			t.Logf("%s (%s; %s)", c.name, c.conf, c.note)
			cfg := snabbConfig(t, filepath.Join(dir, "confs", c.conf))
			var out4, out6 bytes.Buffer
			a, err := Replay(cfg, openPcap(t, dir, c.in4), openPcap(t, dir, c.in6), &out4, &out6)
			if err != nil {
				t.Fatalf("Replay: %v", err)
			}
			for _, side := range []struct {
				name, want string
				got        *bytes.Buffer
			}{{"IPv4", c.out4, &out4}, {"IPv6", c.out6, &out6}} {
				got := readPcap(t, side.got)
				var want [][]byte
				if side.want != "" {
					want = readPcap(t, openPcap(t, dir, side.want))
				}
				if len(got) != len(want) {
					t.Errorf("%s side: %d packets, want %d (%s)", side.name, len(got), len(want), side.want)
				}
				for i := range min(len(got), len(want)) {
					if !bytes.Equal(got[i], want[i]) {
						t.Errorf("%s side packet %d:\n got % x\nwant % x", side.name, i+1, got[i], want[i])
					}
				}
				for i := len(want); i < len(got); i++ {
					t.Errorf("%s side extra packet %d: % x", side.name, i+1, got[i])
				}
			}
			if t.Failed() {
				t.Logf("counters: %v", a.Counters())
			}
		})
	}
}

// TestSnabbCheckRunTime: check on each conformance configuration, with all
// of its cases' inputs, runs in well under a second.
func TestSnabbCheckRunTime(t *testing.T) {
	dir := snabbDir(t)
	byConf := map[string][]snabbCase{}
	var confs []string
	for _, c := range snabbCases(t, dir) {
		if byConf[c.conf] == nil {
			confs = append(confs, c.conf)
		}
		byConf[c.conf] = append(byConf[c.conf], c)
	}
	for _, conf := range confs {
		start := time.Now()
		for _, c := range byConf[conf] {
			cfg := snabbConfig(t, filepath.Join(dir, "confs", conf))
			if _, err := Replay(cfg, openPcap(t, dir, c.in4), openPcap(t, dir, c.in6), io.Discard, io.Discard); err != nil {
				t.Fatal(err)
			}
		}
		d := time.Since(start)
		t.Logf("%-34s %2d cases %v", conf, len(byConf[conf]), d)
		if d > time.Second {
			t.Errorf("%s: %v, want well under a second", conf, d)
		}
	}
}
