package aftr

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/aftr/snabbconf"
)

// LoadSnabb puts the file's softwires straight into the table New adopts:
// nothing in Config.Static, every softwire served, every BR address one of
// the AFTR's.
func TestLoadSnabbFillsTheTable(t *testing.T) {
	text := snabbConf(softwire(tShare, 1, tB4A, tAFTR, 4, 0) + softwire(tShare, 2, tB4B, tBR2, 4, 0))
	cfg := DefaultConfig()
	if err := LoadSnabb(writeConf(t, text), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Static) != 0 {
		t.Errorf("Config.Static holds %d bindings, want them in the table only", len(cfg.Static))
	}
	if st := cfg.StaticBindings(); len(st) != 2 || st[0].B4 != tB4A || st[1].BR != tBR2 {
		t.Errorf("StaticBindings %v", st)
	}
	a, err := New(cfg, &fakeLink{}, &fakeLink{})
	if err != nil {
		t.Fatal(err)
	}
	if b := a.Bindings(); len(b) != 2 || !b[0].Static || !b[1].Static {
		t.Errorf("bindings %v", b)
	}
	for _, br := range []netip.Addr{tAFTR, tBR2} {
		if !a.ownsIPv6(br.As16()) {
			t.Errorf("BR address %v is not the AFTR's", br)
		}
	}
}

// One Config, two AFTRs: each has its own table (the second a copy of the
// file's bindings), with its own clock, and PCP bindings of one are not
// the other's.
func TestLoadSnabbTwoAFTRs(t *testing.T) {
	cfg := testConfig()
	if err := LoadSnabb(writeConf(t, snabbConf(softwire(tShare, 1, tB4A, tAFTR, 4, 0))), &cfg); err != nil {
		t.Fatal(err)
	}
	var as [2]*AFTR
	var clocks [2]*fakeClock
	for i := range as {
		c := cfg
		clocks[i] = newClock()
		c.Now = clocks[i].Now
		a, err := New(c, &fakeLink{}, &fakeLink{})
		if err != nil {
			t.Fatal(err)
		}
		as[i] = a
	}
	b, err := as[0].pool.Allocate(tB4C, bindings.Request{Size: 1024, Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := b.PSID.Contiguous()
	if _, _, ok := as[0].table.Lookup(b.IPv4.As4(), r.First); !ok {
		t.Fatal("the PCP binding is not in its AFTR's table")
	}
	if _, _, ok := as[1].table.Lookup(b.IPv4.As4(), r.First); ok {
		t.Error("one AFTR's PCP binding is in the other's table")
	}
	for i, a := range as {
		if n := len(a.Bindings()); n != 2-i {
			t.Errorf("AFTR %d has %d bindings, want %d", i, n, 2-i)
		}
	}
	// The adopted table runs on its AFTR's clock.
	clocks[0].Advance(2 * time.Hour)
	if _, _, ok := as[0].table.Lookup(b.IPv4.As4(), r.First); ok {
		t.Error("the PCP binding outlived its lifetime on the AFTR's clock")
	}
}

// A softwire the table refuses (a loopback B4 address, which the schema's
// ipv6-address type allows) fails LoadSnabb, naming the file and line, as
// it failed New when it came through Config.Static.
func TestLoadSnabbTableRefuses(t *testing.T) {
	text := snabbConf(softwire(tShare, 1, tB4A, tAFTR, 4, 0) + softwire(tShare, 2, netip.MustParseAddr("::1"), tAFTR, 4, 0))
	cfg := DefaultConfig()
	err := LoadSnabb(writeConf(t, text), &cfg)
	if !errors.Is(err, ErrConfig) || !errors.Is(err, bindings.ErrInvalid) || !strings.Contains(err.Error(), "lwaftr.conf:5:") {
		t.Errorf("LoadSnabb = %v, want ErrConfig, bindings.ErrInvalid at line 5", err)
	}
}

// Without br-address a softwire tunnels to internal-interface's address,
// given after the binding table; without that either, to Config.Addr
// (Config.Static, which New completes).
func TestLoadSnabbDefaultBR(t *testing.T) {
	noBR := `
    softwire { ipv4 192.0.2.100; psid 1; b4-ipv6 2001:db8:b4::1; port-set { psid-length 4; } }`
	cfg := DefaultConfig()
	if err := LoadSnabb(writeConf(t, snabbConf(noBR)), &cfg); err != nil {
		t.Fatal(err)
	}
	if st := cfg.StaticBindings(); len(st) != 1 || st[0].BR != tAFTR || len(cfg.Static) != 0 {
		t.Errorf("static %v (Config.Static %v), want BR %v from internal-interface", st, cfg.Static, tAFTR)
	}
	bare := "softwire-config { binding-table {" + noBR + " } }"
	cfg = DefaultConfig()
	if err := LoadSnabb(writeConf(t, bare), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Static) != 1 || cfg.Static[0].BR.IsValid() {
		t.Fatalf("Config.Static %v, want the softwire without BR", cfg.Static)
	}
	cfg.Addr = tAFTR
	a, err := New(cfg, &fakeLink{}, &fakeLink{})
	if err != nil {
		t.Fatal(err)
	}
	if b := a.Bindings(); len(b) != 1 || b[0].BR != tAFTR {
		t.Errorf("bindings %v, want BR %v", b, tAFTR)
	}
}

// Two files into one Config make one table, refusing their conflicts.
func TestLoadSnabbTwoFiles(t *testing.T) {
	cfg := DefaultConfig()
	if err := LoadSnabb(writeConf(t, snabbConf(softwire(tShare, 1, tB4A, tAFTR, 4, 0))), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := LoadSnabb(writeConf(t, snabbConf(softwire(tShare, 2, tB4B, tAFTR, 4, 0))), &cfg); err != nil {
		t.Fatal(err)
	}
	if n := len(cfg.StaticBindings()); n != 2 {
		t.Errorf("%d static bindings, want 2", n)
	}
	err := LoadSnabb(writeConf(t, snabbConf(softwire(tShare, 3, tB4C, tAFTR, 6, 0))), &cfg)
	if !errors.Is(err, ErrConfig) || !errors.Is(err, bindings.ErrConflict) {
		t.Errorf("conflicting second file: %v", err)
	}
}

// Syntax errors anywhere in the file still come before the table's or the
// schema's complaints about what precedes them.
func TestLoadSnabbSyntaxErrorWins(t *testing.T) {
	text := snabbConf(softwire(tShare, 1, netip.MustParseAddr("::1"), tAFTR, 4, 0)) + "}\n"
	cfg := DefaultConfig()
	err := LoadSnabb(writeConf(t, text), &cfg)
	if !errors.Is(err, snabbconf.ErrSyntax) {
		t.Errorf("LoadSnabb = %v, want the syntax error", err)
	}
}
