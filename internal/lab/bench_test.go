package lab

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkTCPThroughLab downloads through LAN host → B4 (NAT, encap) →
// access network → AFTR (decap, check) → Internet host and back: the whole
// in-process path, gVisor stacks at both ends. MB/s is the TCP goodput.
func BenchmarkTCPThroughLab(b *testing.B) {
	w, err := New(Config{B4s: 1, Pool: netip.MustParsePrefix("192.0.2.0/30"), PortsPerB4: 4096})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := w.WaitProvisioned(ctx); err != nil {
		b.Fatal(err)
	}
	const n = 16 << 20
	b.SetBytes(n)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var r Result
		if err := w.TCP(ctx, 0, n, &r); err != nil {
			b.Fatal(err)
		}
	}
}
