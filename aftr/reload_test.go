package aftr

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/aftr/snabbconf"
)

var (
	tBR3 = netip.MustParseAddr("2001:db8::3")
	tB4D = netip.MustParseAddr("2001:db8:d::1")
	tB4E = netip.MustParseAddr("2001:db8:e::1")
)

// lineOf is the 1-based line of the first line of text holding s.
func lineOf(t *testing.T, text, s string) int {
	t.Helper()
	i := strings.Index(text, s)
	if i < 0 {
		t.Fatalf("%q not in the file", s)
	}
	return strings.Count(text[:i], "\n") + 1
}

// reloadRig is an AFTR with a pool, started from a Snabb file whose
// three softwires share tShare, with one PCP (dynamic) binding for tB4C.
func reloadRig(t *testing.T) (r *rig, path string, logs *bytes.Buffer, dyn bindings.Binding) {
	t.Helper()
	path = writeConf(t, snabbConf(softwire(tShare, 1, tB4A, tAFTR, 4, 0)+softwire(tShare, 2, tB4B, tAFTR, 4, 0)+softwire(tShare, 3, tB4D, tAFTR, 4, 0)))
	logs = &bytes.Buffer{}
	r = newRig(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
		if err := LoadSnabb(path, c); err != nil {
			t.Fatal(err)
		}
	})
	r.bind(tB4C, 1)
	got := r.a.table.ByB4(tB4C)
	if len(got) != 1 || got[0].Static {
		t.Fatalf("PCP binding = %v", got)
	}
	return r, path, logs, got[0]
}

// A reload adds, removes and changes static bindings and leaves the PCP
// binding as it was; the file's interface settings are reported, not
// applied.
func TestReloadStatic(t *testing.T) {
	r, path, logs, dyn := reloadRig(t)
	// psid 1 kept, 2 removed, 3 to another B4 and BR, 4 added.
	text := snabbConf(softwire(tShare, 1, tB4A, tAFTR, 4, 0) + softwire(tShare, 3, tB4E, tBR2, 4, 0) + softwire(tShare, 4, tB4B, tBR3, 4, 0))
	text = strings.Replace(text, "internal-interface { error-rate-limiting", "internal-interface { mtu 1400; error-rate-limiting", 1)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := r.a.ReloadStatic(path)
	if err != nil {
		t.Fatal(err)
	}
	if res.Added != 1 || res.Removed != 1 || res.Changed != 1 || res.Unchanged != 1 {
		t.Errorf("result %+v, want 1 added, 1 removed, 1 changed, 1 unchanged", res)
	}
	wantAdded := fmt.Sprintf("%s:%d: %v", path, lineOf(t, text, "psid 4;"), bindings.Binding{B4: tB4B, IPv4: tShare, PSID: mustPSID(t, 0, 4, 4), BR: tBR3})
	if !slices.Equal(res.FirstAdded, []string{wantAdded}) {
		t.Errorf("FirstAdded %q, want %q", res.FirstAdded, wantAdded)
	}
	if len(res.FirstRemoved) != 1 || !strings.Contains(res.FirstRemoved[0], tB4B.String()) || len(res.FirstChanged) != 1 || !strings.Contains(res.FirstChanged[0], tB4E.String()) {
		t.Errorf("examples %q %q", res.FirstRemoved, res.FirstChanged)
	}
	if len(res.NeedsRestart) != 1 || !strings.Contains(res.NeedsRestart[0], "internal-interface MTU: 1500 -> 1400") {
		t.Errorf("NeedsRestart %q", res.NeedsRestart)
	}
	if r.a.cfg.AccessMTU != 1500 {
		t.Errorf("AccessMTU changed to %d at runtime", r.a.cfg.AccessMTU)
	}
	ip := tShare.As4()
	for _, w := range []struct {
		psid   uint16
		b4, br netip.Addr
	}{{1, tB4A, tAFTR}, {2, netip.Addr{}, netip.Addr{}}, {3, tB4E, tBR2}, {4, tB4B, tBR3}} {
		b4, br, ok := r.a.table.Lookup(ip, w.psid<<12|7)
		if b4 != w.b4 || br != w.br || ok != w.b4.IsValid() {
			t.Errorf("psid %d: %v %v %v, want %v %v", w.psid, b4, br, ok, w.b4, w.br)
		}
	}
	if !r.a.ownsIPv6(tBR3.As16()) {
		t.Error("a new binding's BR address is not the AFTR's")
	}
	if got := r.a.table.ByB4(tB4C); len(got) != 1 || got[0] != dyn {
		t.Errorf("PCP binding after the reload: %v, want %v", got, dyn)
	}
	// The changed binding carries traffic through its new BR.
	r.a.FromAccess(encap(tB4E, tBR2, udp4(tShare, tRemote, 3<<12|7, 53, 64, []byte("x"))))
	r.oneInternet()
	for _, s := range []string{"static bindings reloaded", "added=1 removed=1 changed=1 unchanged=1", "needs a restart", wantAdded} {
		if !strings.Contains(logs.String(), s) {
			t.Errorf("log lacks %q:\n%s", s, logs)
		}
	}
	// The same file again: nothing to do, nothing more to restart for.
	res, err = r.a.ReloadStatic(path)
	if err != nil || res.Added+res.Removed+res.Changed != 0 || res.Unchanged != 3 || len(res.NeedsRestart) != 0 {
		t.Errorf("second reload %+v, %v", res, err)
	}
}

// A bad file is refused whole with its file:line, and the table stays.
func TestReloadStaticRefused(t *testing.T) {
	r, path, _, dyn := reloadRig(t)
	before := r.a.Bindings()
	dynPSID := dyn.PSID
	good := softwire(tShare, 1, tB4A, tAFTR, 4, 0) + softwire(tShare, 4, tB4E, tAFTR, 4, 0) // would add psid 4, remove 2 and 3
	for _, c := range []struct {
		name, text, at string
		is             error
	}{
		{"syntax", snabbConf(good + "\n    softwire { ipv4 192.0.2.100; psid 5 b4-ipv6 2001:db8:f::1; }"), "psid 5 b4-ipv6", snabbconf.ErrSyntax},
		{"bad value", snabbConf(good + strings.Replace(softwire(tShare, 5, tB4B, tAFTR, 4, 0), tB4B.String(), "2001:db8::g", 1)), "2001:db8::g", snabbconf.ErrValue},
		{"two softwires on one port set", snabbConf(good + softwire(tShare, 1, tB4B, tAFTR, 4, 0)), "psid 1; b4-ipv6 " + tB4B.String(), nil},
		{"other PSID parameters on one address", snabbConf(good + softwire(tShare, 5, tB4B, tAFTR, 6, 0)), "psid 5;", snabbconf.ErrConflict},
		{"on a PCP binding", snabbConf(good + softwire(dyn.IPv4, int(dynPSID.ID), tB4B, tAFTR, int(dynPSID.Length), 0)), "b4-ipv6 " + tB4B.String(), bindings.ErrConflict},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(c.text), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := r.a.ReloadStatic(path)
			if err == nil {
				t.Fatal("bad file accepted")
			}
			if want := fmt.Sprintf("%s:%d:", path, lineOf(t, c.text, c.at)); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %v is not %v", err, c.is)
			}
			if after := r.a.Bindings(); !slices.Equal(after, before) {
				t.Errorf("table changed by a refused file:\n%v\nwant\n%v", after, before)
			}
		})
	}
	// A file that cannot be read at all is refused too.
	if _, err := r.a.ReloadStatic(path + ".missing"); err == nil || !slices.Equal(r.a.Bindings(), before) {
		t.Errorf("missing file: %v", err)
	}
	// Still serving the old table: psid 2 (to be removed by the refused file).
	r.a.FromAccess(encap(tB4B, tAFTR, udp4(tShare, tRemote, 2<<12|7, 53, 64, []byte("x"))))
	r.oneInternet()
}
