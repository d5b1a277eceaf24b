package lanpcp

import (
	"net/netip"
	"testing"
)

// BenchmarkHandleMAPRefresh is one PCP MAP refresh of an existing mapping,
// request bytes to answer bytes.
func BenchmarkHandleMAPRefresh(b *testing.B) {
	f := newFixture(b, true, func(c *Config) { c.Burst = 1 << 30 }) // the fake clock refills nothing
	req := mapReq(b, hostA, mapOpts{proto: 6, iport: 80, lifetime: 600, nonce: nonce1})
	src := netip.AddrPortFrom(hostA, 40000)
	b.ReportAllocs()
	for b.Loop() {
		if f.srv.Handle(req, src) == nil {
			b.Fatal("no answer")
		}
	}
}

// BenchmarkHandleNATPMPMap is one NAT-PMP mapping refresh.
func BenchmarkHandleNATPMPMap(b *testing.B) {
	f := newFixture(b, true, func(c *Config) { c.Burst = 1 << 30 }) // the fake clock refills nothing
	req := pmp(2, 80, 0, 600)
	src := netip.AddrPortFrom(hostA, 40000)
	b.ReportAllocs()
	for b.Loop() {
		if f.srv.Handle(req, src) == nil {
			b.Fatal("no answer")
		}
	}
}
