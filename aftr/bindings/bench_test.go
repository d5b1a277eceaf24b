package bindings

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/portset"
)

// benchTable fills 192.0.2.0/24 with 1024-port blocks, 63 B4s per address,
// static or dynamic, and returns the probes (a port inside each block).
func benchTable(b *testing.B, dynamic bool) (*Table, [][4]byte, []uint16) {
	tb := New(Config{})
	var ips [][4]byte
	var ports []uint16
	for a := range 256 {
		ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(a)})
		for psid := uint16(1); psid < 64; psid++ {
			bd := Binding{B4: b4(a<<6 | int(psid)), IPv4: ip, PSID: portset.PSID{Length: 6, ID: psid}, BR: br1, Static: !dynamic}
			bd.Expires = time.Now().Add(time.Hour)
			if err := tb.Restore(bd); err != nil {
				b.Fatal(err)
			}
			ips = append(ips, ip.As4())
			ports = append(ports, psid*1024+uint16(a))
		}
	}
	return tb, ips, ports
}

func BenchmarkLookup(b *testing.B) {
	for _, dynamic := range []bool{false, true} {
		name := "static"
		if dynamic {
			name = "dynamic" // reads the clock (time.Now) on each hit
		}
		b.Run(name, func(b *testing.B) {
			tb, ips, ports := benchTable(b, dynamic)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, _, ok := tb.Lookup(ips[i], ports[i]); !ok {
					b.Fatal("miss")
				}
				if i++; i == len(ips) {
					i = 0
				}
			}
		})
	}
	b.Run("dynamic-at", func(b *testing.B) {
		tb, ips, ports := benchTable(b, true)
		b.ReportAllocs()
		now := time.Now() // one clock reading per batch of packets
		i := 0
		for b.Loop() {
			if _, _, ok := tb.LookupAt(ips[i], ports[i], now); !ok {
				b.Fatal("miss")
			}
			if i++; i == len(ips) {
				i = 0
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		tb, _, _ := benchTable(b, false)
		b.ReportAllocs()
		ip := [4]byte{198, 51, 100, 1}
		for b.Loop() {
			tb.Lookup(ip, 4000)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		tb, ips, ports := benchTable(b, false)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				tb.Lookup(ips[i], ports[i])
				if i++; i == len(ips) {
					i = 0
				}
			}
		})
	})
}

func BenchmarkCheck(b *testing.B) {
	tb, ips, ports := benchTable(b, false)
	b4s := make([]netip.Addr, len(ips))
	for i := range ips {
		b4s[i], _, _ = tb.Lookup(ips[i], ports[i])
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if !tb.Check(b4s[i], ips[i], ports[i]) {
			b.Fatal("check failed")
		}
		if i++; i == len(ips) {
			i = 0
		}
	}
}

// BenchmarkAllocate: one new B4 per op into a 192.0.2.0/24 pool of 1024-port
// blocks (16128 blocks), refilled when full; and 4096 B4s into a fresh /24
// per op.
func BenchmarkAllocate(b *testing.B) {
	b.Run("one", func(b *testing.B) {
		c := newClock()
		_, p := newPool(b, c, 1024, "192.0.2.0/24")
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			if _, err := p.Allocate(b4(n), asMuch); err != nil {
				b.StopTimer()
				_, p = newPool(b, c, 1024, "192.0.2.0/24")
				n = 0
				b.StartTimer()
				continue
			}
			n++
		}
	})
	b.Run("4096-in-slash24", func(b *testing.B) {
		c := newClock()
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			_, p := newPool(b, c, 1024, "192.0.2.0/24")
			b.StartTimer()
			for i := range 4096 {
				if _, err := p.Allocate(b4(i), asMuch); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("renew", func(b *testing.B) {
		c := newClock()
		_, p := newPool(b, c, 1024, "192.0.2.0/24")
		for i := range 4096 {
			if _, err := p.Allocate(b4(i), asMuch); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := p.Allocate(b4(i), asMuch); err != nil {
				b.Fatal(err)
			}
			i = (i + 1) % 4096
		}
	})
}

// BenchmarkTable4M fills a /16 at 64 B4s per address (4 M static bindings)
// and reports the heap it holds per binding. The /16 is 198.18.0.0/16 from
// the benchmarking block (RFC 2544, RFC 6890): the documentation blocks hold
// only 768 addresses.
func BenchmarkTable4M(b *testing.B) {
	if testing.Short() {
		b.Skip("4 M bindings")
	}
	const n = 1 << 22
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		tb := New(Config{})
		for i := range n {
			ip := netip.AddrFrom4([4]byte{198, 18, byte(i >> 14), byte(i >> 6)})
			bd := Binding{
				B4:   netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 8: 1, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)}),
				IPv4: ip, PSID: portset.PSID{Length: 6, ID: uint16(i & 63)}, BR: br1, Static: true,
			}
			if err := tb.AddStatic(bd); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if tb.Len() != n {
			b.Fatalf("Len = %d", tb.Len())
		}
		if _, _, ok := tb.Lookup([4]byte{198, 18, 255, 255}, 63*1024); !ok {
			b.Fatal("last binding missing")
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/binding")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MB")
		start := time.Now()
		tb.mu.Lock()
		tb.sweep(time.Now().UnixNano())
		tb.mu.Unlock()
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/sweep")
		runtime.KeepAlive(tb)
	}
}
