package snabbconf

import (
	"bytes"
	"reflect"
	"testing"
	"testing/iotest"

	"github.com/lw4o6/lw4o6/stack/portset"
)

// FuzzParse checks that no input panics, that Stream, reading one octet at
// a time, agrees with Parse, and that whatever parses holds the invariants
// the lwAFTR relies on. Seeds: testdata/fuzz/FuzzParse,
// snippets of Snabb's conformance configurations.
func FuzzParse(f *testing.F) {
	f.Add([]byte(mutate(1, base[1])))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(bytes.NewReader(b), "fuzz.conf")
		// Streamed in reads of one octet, the same softwires and error.
		var streamed []Softwire
		_, serr := Stream(iotest.OneByteReader(bytes.NewReader(b)), "fuzz.conf", func(s Softwire) error {
			streamed = append(streamed, s)
			return nil
		})
		if (err == nil) != (serr == nil) || err != nil && err.Error() != serr.Error() {
			t.Fatalf("Parse: %v, Stream: %v", err, serr)
		}
		if err == nil && !reflect.DeepEqual(streamed, c.Softwires) {
			t.Fatalf("streamed %d softwires, parsed %d", len(streamed), len(c.Softwires))
		}
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %v is not an *Error", err)
			}
			return
		}
		for _, sw := range c.Softwires {
			ps := sw.PortSet
			if got, err := portset.NewPSID(ps.Offset, ps.Length, ps.ID); err != nil || got != ps || ps.ID != sw.PSID {
				t.Fatalf("softwire %+v has an invalid port set", sw)
			}
			if !sw.IPv4.Is4() || !sw.B4.Is6() || sw.Line < 1 {
				t.Fatalf("softwire %+v", sw)
			}
		}
		if c.External.MTU < minMTU4 || c.Internal.MTU < minMTU6 || c.External.MaxFragmentsPerPacket < 1 || c.Internal.ErrorRateLimit.Period <= 0 {
			t.Fatalf("interfaces %+v %+v", c.External, c.Internal)
		}
	})
}
