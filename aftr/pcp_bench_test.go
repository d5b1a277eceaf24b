package aftr

import (
	"testing"
	"time"
)

// pcpBenchRig is an AFTR on the real clock with discarding links, no
// journal, and tB4A bound by PCP; it returns tB4A's renewal as the B4
// sends it: its nonce, suggesting the address and port it holds
// (b4/provision.go), in a softwire packet.
func pcpBenchRig(b *testing.B, edit func(*Config)) (*AFTR, []byte) {
	b.Helper()
	cfg := testConfig()
	if edit != nil {
		edit(&cfg)
	}
	a, err := New(cfg, discard{}, discard{})
	if err != nil {
		b.Fatal(err)
	}
	r := &rig{t: b, a: a, cfg: cfg, access: &fakeLink{}, internet: &fakeLink{}}
	a.access = r.access
	ip, first, _ := r.bind(tB4A, 1)
	a.access = discard{}
	q := b4Req(1, 3600)
	q.suggestIP, q.suggestPort = ip, first
	return a, pcpPacket(tB4A, q.marshal(b))
}

// BenchmarkPCPRenewal: a bound B4's MAP renewal through FromAccess to its
// answer on the access link (no journal, rate limits off: the cost of
// the common request path itself).
func BenchmarkPCPRenewal(b *testing.B) {
	a, req := pcpBenchRig(b, func(c *Config) { c.PCPRate, c.PCPRatePerB4 = 0, 0 })
	buf := make([]byte, len(req))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, req)
		a.FromAccess(buf)
	}
	if got, want := a.count.Packets(cOutPCP), a.count.Packets(cInPCP); got != want || got == 0 {
		b.Fatalf("%d answers to %d requests", got, want)
	}
}

// BenchmarkPCPFlood: one B4 sending renewals as fast as one core lets it,
// with the default rate limits (DefaultConfig: 2/s, 10 at once). Reports
// the requests answered per second of the run.
func BenchmarkPCPFlood(b *testing.B) {
	a, req := pcpBenchRig(b, nil)
	buf := make([]byte, len(req))
	start, out0 := time.Now(), a.count.Packets(cOutPCP)
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, req)
		a.FromAccess(buf)
	}
	answered := a.count.Packets(cOutPCP) - out0
	b.ReportMetric(float64(answered)/time.Since(start).Seconds(), "answered/s")
}
