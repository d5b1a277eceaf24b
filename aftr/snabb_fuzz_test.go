package aftr

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/aftr/snabbconf"
)

// FuzzApplySnabb parses arbitrary text as a Snabb softwire-config, applies
// what parses to a Config and builds an AFTR from it. Nothing panics;
// ApplySnabb fails only with a *snabbconf.Error (ErrValue) and New only
// with ErrConfig; an AFTR that is built holds exactly the parsed
// softwires as static bindings, each with its own or the default
// br-address, and the interfaces' MTUs. Seeds: testdata/fuzz/FuzzApplySnabb,
// also Snabb configurations.
func FuzzApplySnabb(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		sc, err := snabbconf.Parse(bytes.NewReader(b), "fuzz.conf")
		if err != nil {
			return // FuzzParse's business
		}
		cfg := DefaultConfig()
		cfg.Addr = tAFTR
		if err := ApplySnabb(&cfg, sc); err != nil {
			var se *snabbconf.Error
			if !errors.As(err, &se) || !errors.Is(err, snabbconf.ErrValue) {
				t.Fatalf("ApplySnabb: %v is not a *snabbconf.Error of ErrValue", err)
			}
			return
		}
		if cfg.AccessMTU != sc.Internal.MTU || cfg.InternetMTU != sc.External.MTU {
			t.Fatalf("MTUs %d/%d from %d/%d", cfg.AccessMTU, cfg.InternetMTU, sc.Internal.MTU, sc.External.MTU)
		}
		a, err := New(cfg, &fakeLink{}, &fakeLink{})
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("New: %v is not an ErrConfig", err)
			}
			return
		}
		defer a.Close()
		defaultBR := tAFTR
		if sc.Internal.IP.IsValid() {
			defaultBR = sc.Internal.IP
		}
		var want []string
		for _, s := range sc.Softwires {
			br := s.BR
			if !br.IsValid() {
				br = defaultBR
			}
			want = append(want, bindingKey(bindings.Binding{B4: s.B4, IPv4: s.IPv4, PSID: s.PortSet, BR: br, Static: true}))
		}
		var got []string
		for _, b := range a.Bindings() {
			got = append(got, bindingKey(b))
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("the AFTR holds\n%v\nthe configuration has\n%v", got, want)
		}
	})
}

// bindingKey is every field of b, to compare tables whatever their order.
func bindingKey(b bindings.Binding) string {
	return fmt.Sprintf("%v %v %+v br %v expires %v static %v set %d", b.B4, b.IPv4, b.PSID, b.BR, b.Expires, b.Static, b.Set)
}
