package aftr

import (
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/aftr/bindings"
)

// benchRig is an AFTR on the real clock with discarding links and one
// bound B4, the steady state of the data plane.
func benchRig(b *testing.B) (*AFTR, bindings.Binding) {
	b.Helper()
	cfg := testConfig()
	a, err := New(cfg, discard{}, discard{})
	if err != nil {
		b.Fatal(err)
	}
	bd, err := a.pool.Allocate(tB4A, bindings.Request{Size: 65535, Lifetime: 24 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	return a, bd
}

// BenchmarkFromAccess: a bound B4's 64-octet UDP payload upstream
// (RFC 7596 §6.2: decapsulate, check, decrement TTL, forward).
func BenchmarkFromAccess(b *testing.B) {
	a, bd := benchRig(b)
	r, _ := bd.PSID.Contiguous()
	tmpl := encap(tB4A, tAFTR, udp4(bd.IPv4, tRemote, r.First+1, 53, 64, make([]byte, 64)))
	buf := make([]byte, len(tmpl))
	b.SetBytes(int64(len(tmpl)))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, tmpl) // the AFTR rewrites the packet in place (TTL)
		a.FromAccess(buf)
	}
	if n := a.count.Packets(cOutIPv4); n == 0 {
		b.Fatalf("nothing forwarded: %v", a.Counters())
	}
}

// BenchmarkFromInternet: a 64-octet UDP payload to a bound B4 downstream
// (RFC 7596 §6.2: look up, decrement TTL, encapsulate).
func BenchmarkFromInternet(b *testing.B) {
	a, bd := benchRig(b)
	r, _ := bd.PSID.Contiguous()
	tmpl := udp4(tRemote, bd.IPv4, 53, r.First+1, 64, make([]byte, 64))
	buf := make([]byte, len(tmpl))
	b.SetBytes(int64(len(tmpl)))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, tmpl)
		a.FromInternet(buf)
	}
	if n := a.count.Packets(cOutIPv6); n == 0 {
		b.Fatalf("nothing forwarded: %v", a.Counters())
	}
}
