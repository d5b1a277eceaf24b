package aftr

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/aftr/snabbconf"
	"github.com/lw4o6/lw4o6/stack/cfgfile"
	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/portset"
)

// Snabb configuration import and the Snabb behaviours found wrong when its
// code was read, done right here. Documentation addresses only.

var (
	tBR2   = netip.MustParseAddr("2001:db8::2") // a per-softwire BR address
	tShare = netip.MustParseAddr("192.0.2.100") // an address shared by PSID
	tExt4  = netip.MustParseAddr("198.51.100.9")
)

// snabbConf is a softwire-config with the given softwire statements.
func snabbConf(softwires string) string {
	return `softwire-config {
  binding-table {` + softwires + `
  }
  external-interface { error-rate-limiting { packets 1000; } }
  internal-interface { error-rate-limiting { packets 1000; } }
  instance {
    device test;
    queue {
      id 0;
      external-interface { ip ` + tExt4.String() + `; next-hop { mac 02:00:00:00:00:01; } }
      internal-interface { ip ` + tAFTR.String() + `; next-hop { mac 02:00:00:00:00:02; } }
    }
  }
}
`
}

func softwire(ipv4 netip.Addr, psid int, b4, br netip.Addr, k, a int) string {
	return fmt.Sprintf(`
    softwire { ipv4 %v; psid %d; b4-ipv6 %v; br-address %v;
      port-set { psid-length %d; reserved-ports-bit-count %d; } }`, ipv4, psid, b4, br, k, a)
}

func writeConf(t testing.TB, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "lwaftr.conf")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// snabbRig is an AFTR configured by a Snabb file, with the RFC defaults
// (profile "rfc") or Snabb's.
func snabbRig(t testing.TB, text, profile string) *rig {
	t.Helper()
	r := &rig{t: t, access: &fakeLink{}, internet: &fakeLink{}, clock: newClock()}
	cfg := DefaultConfig()
	if err := ApplyProfile(&cfg, profile); err != nil {
		t.Fatal(err)
	}
	if err := LoadSnabb(writeConf(t, text), &cfg); err != nil {
		t.Fatalf("LoadSnabb: %v", err)
	}
	cfg.Now = r.clock.Now
	a, err := New(cfg, r.access, r.internet)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	r.a, r.cfg = a, cfg
	return r
}

// RFC 7597 §5.1: with a PSID offset of a bits (Snabb's
// reserved-ports-bit-count), block A = 0 is excluded: the ports below
// 2^(16-a), 0-1023 for a = 6. Snabb computes the excluded ports as those
// below 2^a (0-63) and so hands out ports 64-1023. Check value of RFC 7597
// (PROTOCOL.md §3.3): a = 6, k = 8, PSID 0x34 holds 1232-1235, 2256-2259,
// ..., 64720-64723, and not 208-211 (A = 0).
func TestSnabbBugPSIDOffsetExcludesBlockZero(t *testing.T) {
	r := snabbRig(t, snabbConf(softwire(tShare, 0x34, tB4A, tAFTR, 8, 6)), "rfc")
	for _, c := range []struct {
		port uint16
		ok   bool
	}{
		{1232, true}, {1235, true}, {2256, true}, {64720, true}, {64723, true},
		{208, false}, {211, false}, // A = 0: below 1024, in the set by Snabb's rule
		{1231, false}, {1236, false}, {52, false},
	} {
		t.Run(fmt.Sprint(c.port), func(t *testing.T) {
			// Downstream: (address, port) → the B4, or ICMPv4 3/1
			// (generate-icmp-errors defaults to true).
			r.a.FromInternet(udp4(tRemote, tShare, 53, c.port, 64, []byte("down")))
			if c.ok {
				r.softwireTo(r.oneAccess(), tB4A)
			} else if typ, code, _ := icmp4(t, mustIPv4(t, r.oneInternet())); typ != 3 || code != 1 {
				t.Errorf("ICMPv4 %d/%d, want 3/1", typ, code)
			}
			// Upstream: the B4 may send from the port.
			r.a.FromAccess(encap(tB4A, tAFTR, udp4(tShare, tRemote, c.port, 53, 64, []byte("up"))))
			if c.ok {
				r.oneInternet()
			} else {
				m := r.icmp6To(r.oneAccess(), tB4A)
				if m.Type != packet.ICMPv6DstUnreachable || m.Code != packet.ICMPv6CodeSourcePolicy {
					t.Errorf("ICMPv6 %d/%d, want 1/5", m.Type, m.Code)
				}
			}
		})
	}
	if b := r.a.Bindings(); len(b) != 1 || b[0].PSID.Len() != 252 {
		t.Errorf("bindings %v, want one of 2^(16-8) - 2^2 = 252 ports", b)
	}
}

// RFC 7597 §5.1: a and k MUST be the same for every CE sharing an address.
// Snabb accepts two softwires that give one IPv4 address different
// port-set parameters and then looks ports up with whichever comes first;
// here the file is refused, naming the line and the leaf, and so is such a
// binding added to a running table.
func TestSnabbBugConflictingPortSetParams(t *testing.T) {
	for _, c := range []struct{ name, second string }{
		{"psid-length", softwire(tShare, 2, tB4B, tAFTR, 6, 0)},
		{"reserved-ports-bit-count", softwire(tShare, 2, tB4B, tAFTR, 4, 6)},
	} {
		t.Run(c.name, func(t *testing.T) {
			text := snabbConf(softwire(tShare, 1, tB4A, tAFTR, 4, 0) + c.second)
			cfg := DefaultConfig()
			err := LoadSnabb(writeConf(t, text), &cfg)
			var se *snabbconf.Error
			if !errors.As(err, &se) || !errors.Is(err, snabbconf.ErrConflict) {
				t.Fatalf("LoadSnabb = %v, want a snabbconf.ErrConflict", err)
			}
			if se.Line != 5 || se.OtherLine != 3 || !strings.Contains(err.Error(), ":5:") || !strings.Contains(err.Error(), "binding-table/softwire") {
				t.Errorf("error %q (line %d, other %d), want line 5 against line 3 and the leaf", err, se.Line, se.OtherLine)
			}
		})
	}
	// A running AFTR refuses it too (operator and PCP share the table).
	r := snabbRig(t, snabbConf(softwire(tShare, 1, tB4A, tAFTR, 4, 0)), "rfc")
	err := r.a.AddStatic(bindings.Binding{B4: tB4B, IPv4: tShare, PSID: mustPSID(t, 0, 6, 2), BR: tAFTR})
	if !errors.Is(err, bindings.ErrConflict) {
		t.Errorf("AddStatic = %v, want bindings.ErrConflict", err)
	}
	// And so does New, for Config.Static.
	cfg := r.cfg
	cfg.Static = append(cfg.Static, bindings.Binding{B4: tB4B, IPv4: tShare, PSID: mustPSID(t, 6, 4, 2), BR: tAFTR})
	if _, err := New(cfg, &fakeLink{}, &fakeLink{}); !errors.Is(err, ErrConfig) || !errors.Is(err, bindings.ErrConflict) {
		t.Errorf("New = %v, want ErrConfig wrapping bindings.ErrConflict", err)
	}
}

// RFC 7596 §8.1 and RFC 5508 REQ-3: an ICMP error a B4 sends about a packet
// it received quotes that packet, whose destination is the B4's own
// address and port; the upstream check uses that destination port. Snabb
// uses the quoted source port, the remote host's, so it drops the B4's
// errors or lets another B4 send them.
func TestSnabbBugICMPErrorFromB4UsesQuotedDestinationPort(t *testing.T) {
	// Two B4s share tShare with one port each (k = 16): A holds 80, B
	// holds 2300.
	text := snabbConf(softwire(tShare, 80, tB4A, tAFTR, 16, 0) + softwire(tShare, 2300, tB4B, tAFTR, 16, 0))
	for _, profile := range []string{"rfc", "snabb"} {
		t.Run(profile, func(t *testing.T) {
			r := snabbRig(t, text, profile)
			// A received remote:2300 → tShare:80 and answers port unreachable.
			received := udp4(tRemote, tShare, 2300, 80, 60, []byte("to A"))
			e := icmpErr4(tShare, tRemote, packet.ICMPv4DstUnreachable, 3, received)
			sent := bytes.Clone(e)
			r.a.FromAccess(encap(tB4A, tAFTR, e))
			got := mustIPv4(t, r.oneInternet())
			if !bytes.Equal(got[20:], sent[20:]) || got.SrcAddr() != tShare || got.DstAddr() != tRemote {
				t.Errorf("A's error forwarded as\n% x\nwant\n% x", got, sent)
			}
			// B may not send an error about A's packet, though the quoted
			// source port (2300) is B's.
			r.a.FromAccess(encap(tB4B, tAFTR, icmpErr4(tShare, tRemote, packet.ICMPv4DstUnreachable, 3, received)))
			if p := r.internet.take(); len(p) != 0 {
				t.Errorf("B's error about A's packet forwarded")
			}
			r.access.take()
			if got := r.counter("drop-no-source-softwire-ipv6"); got != 1 {
				t.Errorf("drop-no-source-softwire-ipv6 %d, want 1", got)
			}
		})
	}
}

func mustPSID(t testing.TB, a, k uint8, id uint16) portset.PSID {
	t.Helper()
	p, err := portset.NewPSID(a, k, id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Snabb's generate-configuration writes softwires with psid 64 and
// psid-length 6, and Snabb loads the file: LoadSnabb loads it too, skips
// those softwires, installs the rest, and warns once naming the first line.
func TestLoadSnabbSkipsOutOfRangePSID(t *testing.T) {
	b4a := netip.MustParseAddr("2001:db8:b4::10")
	b4b := netip.MustParseAddr("2001:db8:b4::11")
	text := snabbConf(softwire(tShare, 1, b4a, tBR2, 6, 0) + softwire(tShare, 64, b4b, tBR2, 6, 0))
	var logs bytes.Buffer
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	if err := LoadSnabb(writeConf(t, text), &cfg); err != nil {
		t.Fatalf("LoadSnabb: %v", err)
	}
	if st := cfg.StaticBindings(); len(st) != 1 || st[0].B4 != b4a {
		t.Fatalf("static bindings %v, want only %v's", st, b4a)
	}
	out := logs.String()
	if strings.Count(out, "softwires skipped") != 1 || !strings.Contains(out, "count=1") || !strings.Contains(out, "psid 64") {
		t.Errorf("warning not as expected:\n%s", out)
	}
}

// --bindings /dev/zero once ate all memory: LoadSnabb refuses anything but
// a regular file.
func TestLoadSnabbRefusesNonRegular(t *testing.T) {
	cfg := DefaultConfig()
	for _, p := range []string{"/dev/zero", t.TempDir()} {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if err := LoadSnabb(p, &cfg); !errors.Is(err, cfgfile.ErrNotRegular) {
			t.Errorf("LoadSnabb(%s) = %v, want ErrNotRegular", p, err)
		}
	}
}
