package aftr

import (
	"testing"

	"github.com/lw4o6/lw4o6/stack/frag"
)

// BenchmarkHairpin: one bound B4's 64-octet UDP payload to another's
// (RFC 7596 §6.2: decapsulate, check, look up, re-encapsulate).
func BenchmarkHairpin(b *testing.B) {
	a, bd := benchRig(b)
	r, _ := bd.PSID.Contiguous()
	tmpl := encap(tB4A, tAFTR, udp4(bd.IPv4, bd.IPv4, r.First+1, r.First+2, 64, make([]byte, 64)))
	buf := make([]byte, len(tmpl))
	b.SetBytes(int64(len(tmpl)))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, tmpl)
		a.FromAccess(buf)
	}
	if a.count.Packets(cHairpinIPv4) == 0 || a.count.Packets(cOutIPv6) == 0 {
		b.Fatalf("nothing hairpinned: %v", a.Counters())
	}
}

// BenchmarkFromInternetReassembled: a 1400-octet datagram in three IPv4
// fragments, reassembled, encapsulated and fragmented to 1280 (the
// stages' slow path).
func BenchmarkFromInternetReassembled(b *testing.B) {
	a, bd := benchRig(b)
	a.cfg.AccessMTU = 1280
	r, _ := bd.PSID.Contiguous()
	frags, err := frag.FragmentIPv4(bigUDP4(tRemote, bd.IPv4, 53, r.First+1, 1400, false), 576)
	if err != nil {
		b.Fatal(err)
	}
	bufs := make([][]byte, len(frags))
	for i := range bufs {
		bufs[i] = make([]byte, len(frags[i]))
	}
	b.SetBytes(1400)
	b.ReportAllocs()
	for b.Loop() {
		for i, f := range frags {
			copy(bufs[i], f)
			a.FromInternet(bufs[i])
		}
	}
	if a.count.Packets(cOutIPv6Frag) == 0 {
		b.Fatalf("nothing sent: %v", a.Counters())
	}
}
