package lab

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/stack/packet"
)

// PoolCapacity is what the AFTR's allocator really hands out: allocate
// until it refuses.
func TestPoolCapacityMatchesAllocator(t *testing.T) {
	for _, c := range []struct {
		pool  string
		ports int
	}{{"192.0.2.0/30", 2048}, {"192.0.2.1/32", 32768}, {"192.0.2.0/31", 64}, {"192.0.2.0/32", 1024}, {"192.0.2.0/29", 512}} {
		pool := netip.MustParsePrefix(c.pool)
		tb := bindings.New(bindings.Config{})
		p, err := bindings.NewPool(tb, bindings.PoolConfig{Prefixes: []netip.Prefix{pool}, PortsPerB4: c.ports, BR: AFTRAddr})
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for ; got < 100000; got++ {
			if _, err := p.Allocate(B4Addr(got), bindings.Request{Size: 65535, Lifetime: time.Hour}); err != nil {
				break
			}
		}
		if want := PoolCapacity(pool, c.ports); got != want {
			t.Errorf("%s at %d ports: allocator gave %d sets, PoolCapacity says %d", c.pool, c.ports, got, want)
		}
	}
}

func TestCheckPoolAndPoolFor(t *testing.T) {
	err := CheckPool(netip.MustParsePrefix("192.0.2.0/30"), 2048, 200)
	if err == nil {
		t.Fatal("200 B4s fit a /30 at 2048 ports")
	}
	for _, want := range []string{"192.0.2.0/30 holds 124 B4s", "2048 ports per B4", "200 B4s asked"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	if err := CheckPool(netip.MustParsePrefix("192.0.2.0/30"), 2048, 124); err != nil {
		t.Error(err)
	}
	for _, c := range []struct {
		b4s, ports int
		want       string
	}{{3, 2048, "192.0.2.0/30"}, {124, 2048, "192.0.2.0/30"}, {125, 2048, "192.0.2.0/29"}, {1000, 2048, "192.0.2.0/26"}, {7936, 2048, "192.0.2.0/24"}} {
		p, ok := PoolFor(c.b4s, c.ports)
		if !ok || p.String() != c.want {
			t.Errorf("PoolFor(%d, %d) = %v, %v; want %s", c.b4s, c.ports, p, ok, c.want)
		}
	}
	if p, ok := PoolFor(7937, 2048); ok {
		t.Errorf("PoolFor(7937, 2048) = %v: a /24 holds 7936", p)
	}
	// The lab refuses before it builds anything.
	if _, err := New(Config{B4s: 3, Pool: netip.MustParsePrefix("192.0.2.1/32"), PortsPerB4: 32768}); err == nil || !strings.Contains(err.Error(), "3 B4s asked") {
		t.Errorf("New with a too small pool: %v", err)
	}
}

func TestRateMeter(t *testing.T) {
	t0 := time.Now()
	m := NewRateMeter(t0, 100*time.Millisecond, time.Second)
	m.Add(t0.Add(-time.Millisecond))
	for _, d := range []time.Duration{0, 50, 99, 100, 350, 360, 370, 380, 999, 1100, 5000} {
		m.Add(t0.Add(d * time.Millisecond))
	}
	peak, at := m.Peak()
	if peak != 4 || at != 300*time.Millisecond || m.Total() != 9 || m.Early.Load() != 1 || m.Late.Load() != 2 {
		t.Fatalf("peak %d at %v, total %d, early %d, late %d", peak, at, m.Total(), m.Early.Load(), m.Late.Load())
	}
}

func TestIsPCPRequest(t *testing.T) {
	b4, aftr := B4Addr(0).As16(), AFTRAddr.As16()
	enc := func(src, dst [4]byte, sport, dport uint16) []byte {
		return packet.Encapsulate(packet.AppendUDP4(nil, packet.IPv6HeaderLen, src, dst, sport, dport, 64, make([]byte, 60)), packet.IPv6HeaderLen, b4, aftr, 64)
	}
	self, server := [4]byte{192, 0, 0, 2}, [4]byte{192, 0, 0, 1}
	if !isPCPRequest(enc(self, server, 5350, 5351)) {
		t.Error("a MAP request is not a PCP request")
	}
	for name, pkt := range map[string][]byte{
		"response": enc(server, self, 5351, 5350),
		"probe":    enc([4]byte{192, 0, 2, 1}, EchoAddr.As4(), 40000, 7),
		"short":    enc(self, server, 5350, 5351)[:50],
		"ipv4":     packet.AppendUDP4(nil, 0, self, server, 5350, 5351, 64, nil),
	} {
		if isPCPRequest(pkt) {
			t.Errorf("%s counted as a PCP request", name)
		}
	}
}

// isPCPRequest reads any bytes the access network carries without
// panicking, and agrees with the packet parsers on what it accepts.
func FuzzIsPCPRequest(f *testing.F) {
	b4, aftr := B4Addr(0).As16(), AFTRAddr.As16()
	req := packet.Encapsulate(packet.AppendUDP4(nil, packet.IPv6HeaderLen, [4]byte{192, 0, 0, 2}, [4]byte{192, 0, 0, 1}, 5350, 5351, 64, make([]byte, 24)), packet.IPv6HeaderLen, b4, aftr, 64)
	f.Add(req)
	f.Add(req[:60])
	f.Add([]byte{0x60})
	f.Fuzz(func(t *testing.T, b []byte) {
		if !isPCPRequest(b) {
			return
		}
		var outer packet.IPv6
		if err := packet.ParseIPv6(b, &outer); err != nil {
			return // the matcher looks at fewer fields than the parser checks
		}
		ip, err := packet.ParseIPv4(outer.Payload)
		if err != nil {
			return
		}
		if ip.Dst() != [4]byte{192, 0, 0, 1} || ip.Protocol() != packet.ProtoUDP {
			t.Fatalf("accepted a packet to %v protocol %d", ip.DstAddr(), ip.Protocol())
		}
	})
}
