//go:build !race

// The race detector makes sync.Pool drop what it is given back, so the
// count below only holds without it.

package aftr

import "testing"

// A bound B4's renewal, from its softwire packet to its answer on the
// access link, allocates nothing once the pools are warm (issue 11 item
// 6: it cost 22 allocations). BenchmarkPCPRenewal measures its time.
func TestPCPRenewalAllocs(t *testing.T) {
	r := newRig(t, func(c *Config) { c.PCPRate, c.PCPRatePerB4 = 0, 0 })
	ip, first, _ := r.bind(tB4A, 1)
	q := b4Req(1, 3600)
	q.suggestIP, q.suggestPort = ip, first
	req := pcpPacket(tB4A, q.marshal(t))
	buf := make([]byte, len(req))
	r.a.access = discard{}
	allocs := testing.AllocsPerRun(1000, func() {
		copy(buf, req)
		r.a.FromAccess(buf)
	})
	if allocs > 0 {
		t.Errorf("a renewal allocates %v times, want 0", allocs)
	}
	if in, out := r.a.count.Packets(cInPCP), r.a.count.Packets(cOutPCP); in != out {
		t.Errorf("%d requests, %d answers", in, out)
	}
}
