package dhcp6

import (
	"testing"

	"github.com/lw4o6/lw4o6/stack/portset"
)

// fuzzXID is the transaction ID of the fuzzed Replies (the seeds use it).
var fuzzXID = [3]byte{0xa1, 0xb2, 0xc3}

// FuzzParseReply feeds arbitrary messages to the Reply parser: it must not
// panic, and whatever it accepts must be usable as it claims.
func FuzzParseReply(f *testing.F) {
	f.Add(fuzzReply(opt(OptAFTRName, name("aftr.example.net"))))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ParseReply(b, fuzzXID, nil)
		if err != nil {
			return
		}
		if info.AFTRName != "" {
			if _, err := ParseAFTRName(AppendName(nil, info.AFTRName)); err != nil {
				t.Fatalf("accepted name %q does not round-trip: %v", info.AFTRName, err)
			}
		}
		if info.Refresh < irtMinimum {
			t.Fatalf("refresh %v below the minimum", info.Refresh)
		}
		if lw := info.LW; lw != nil {
			if !lw.BR.Is6() || checkUnicast6(lw.BR) != nil {
				t.Fatalf("BR %v accepted", lw.BR)
			}
			if lw.HasBinding() {
				if _, err := portset.NewPSID(lw.PSID.Offset, lw.PSID.Length, lw.PSID.ID); err != nil {
					t.Fatalf("PSID %v accepted: %v", lw.PSID, err)
				}
				if r, err := lw.Ports(); err == nil && (r.Size == 0 || uint32(r.First)+r.Size > 1<<16) {
					t.Fatalf("ports %v", r)
				}
				_ = lw.TunnelSource()
			}
		}
	})
}

// fuzzReply is a Reply header (xid fuzzXID, a Server ID) and opts.
func fuzzReply(opts ...[]byte) []byte {
	b := []byte{7, fuzzXID[0], fuzzXID[1], fuzzXID[2]}
	b = append(b, opt(2, []byte{0, 3, 0, 1, 2, 0, 0, 0, 0, 1})...)
	for _, o := range opts {
		b = append(b, o...)
	}
	return b
}
