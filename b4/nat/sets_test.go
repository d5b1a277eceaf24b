package nat

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/portset"
)

var (
	smallSet  = portset.Range{First: 4096, Size: 64}
	secondSet = portset.Range{First: 8192, Size: 64}
)

// fill opens n UDP flows from lanA (ports from base) and returns their
// external ports; it stops at the first error and returns it.
func fill(tb *Table, base uint16, n int) ([]uint16, error) {
	var ext []uint16
	for i := range n {
		b := udpPacket(ap(lanA, base+uint16(i)), ap(remote1, 53), nil)
		if _, err := tb.Outbound(b); err != nil {
			return ext, err
		}
		ext = append(ext, srcOf(b).Port())
	}
	return ext, nil
}

// docs/port-sets.md: with a second set the NAT maps past the first set's
// size, the first set first; every port is in a held set; Stats shows ports
// used against ports held, per set.
func TestAddSetDrawsFromAll(t *testing.T) {
	tb, _ := newTable(t, Config{})
	if err := tb.SetExternal(pub, smallSet); err != nil {
		t.Fatal(err)
	}
	ext, err := fill(tb, 10000, 64)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fill(tb, 20000, 1); err != ErrPortsExhausted {
		t.Fatalf("65th flow on 64 ports: %v, want ErrPortsExhausted", err)
	}
	s := tb.Stats()
	if s.Ports != 64 || s.PortsUsed != 64 || s.AllocFailures != 1 || len(s.Sets) != 1 || s.Sets[0].Used != 64 {
		t.Errorf("full set: %+v", s)
	}
	if err := tb.AddSet(pub, secondSet); err != nil {
		t.Fatal(err)
	}
	more, err := fill(tb, 20000, 64)
	if err != nil {
		t.Fatalf("flows on the second set: %v", err)
	}
	for _, p := range ext {
		if !smallSet.Contains(p) {
			t.Fatalf("first flows on %d, outside the first set", p)
		}
	}
	for _, p := range more {
		if !secondSet.Contains(p) {
			t.Fatalf("later flow on %d, outside the second set", p)
		}
	}
	s = tb.Stats()
	if s.Ports != 128 || s.PortsUsed != 128 || len(s.Sets) != 2 || s.Sets[1].Used != 64 || s.Sets[1].Ports != secondSet {
		t.Errorf("two full sets: %+v", s)
	}
	// An inbound reply to a second-set port reaches its LAN host.
	mustIn(t, tb, udpPacket(ap(remote1, 53), ap(pub, more[5]), nil))
	// Adding it again changes nothing.
	if err := tb.AddSet(pub, secondSet); err != nil || tb.Stats().Ports != 128 {
		t.Errorf("second AddSet: %v, %d ports", err, tb.Stats().Ports)
	}
}

// RFC 7596 §5.1, docs/port-sets.md: removing a set flushes the mappings on
// its ports and only those; renewing the first set keeps the added ones.
func TestRemoveSetFlushesOnlyItsPorts(t *testing.T) {
	tb, _ := newTable(t, Config{})
	tb.SetExternal(pub, smallSet)
	tb.AddSet(pub, secondSet)
	first, _ := fill(tb, 10000, 64)
	second, err := fill(tb, 20000, 10)
	if err != nil {
		t.Fatal(err)
	}
	// SetExternal with the same values (a renewal) keeps both sets.
	if err := tb.SetExternal(pub, smallSet); err != nil || tb.Stats().Ports != 128 || tb.Stats().Mappings != 74 {
		t.Fatalf("renewal: %v %+v", err, tb.Stats())
	}
	if ok, err := tb.RemoveSet(secondSet); !ok || err != nil {
		t.Fatalf("RemoveSet: %v %v", ok, err)
	}
	s := tb.Stats()
	if s.Mappings != 64 || s.UDPSessions != 64 || s.Ports != 64 || len(s.Sets) != 1 {
		t.Errorf("after RemoveSet: %+v", s)
	}
	if err := tb.Inbound(udpPacket(ap(remote1, 53), ap(pub, second[0]), nil)); err != ErrNoMapping {
		t.Errorf("reply to a removed set's port: %v, want ErrNoMapping", err)
	}
	mustIn(t, tb, udpPacket(ap(remote1, 53), ap(pub, first[0]), nil))
	if ok, err := tb.RemoveSet(secondSet); ok || err != nil {
		t.Errorf("second RemoveSet: %v %v", ok, err)
	}
	if _, err := tb.RemoveSet(smallSet); !errors.Is(err, ErrInvalid) {
		t.Errorf("RemoveSet of the first set: %v, want ErrInvalid", err)
	}
	// A new first set drops the added ones with everything else.
	tb.AddSet(pub, secondSet)
	if err := tb.SetExternal(pub, portset.Range{First: 12288, Size: 64}); err != nil {
		t.Fatal(err)
	}
	if s := tb.Stats(); s.Ports != 64 || len(s.Sets) != 1 || s.Mappings != 0 {
		t.Errorf("after a new first set: %+v", s)
	}
	tb.Clear()
	if s := tb.Stats(); s.Ports != 0 || len(s.Sets) != 0 {
		t.Errorf("after Clear: %+v", s)
	}
}

// AddSet refuses what it cannot serve, with clear errors and nothing changed.
func TestAddSetInvalid(t *testing.T) {
	tb := New(Config{})
	if err := tb.AddSet(pub, secondSet); err != ErrNoExternal {
		t.Errorf("before SetExternal: %v", err)
	}
	tb.SetExternal(pub, smallSet)
	for _, c := range []struct {
		name string
		err  error
	}{
		{"other address", tb.AddSet(pub2, secondSet)},
		{"nil set", tb.AddSet(pub, nil)},
		{"not ipv4", tb.AddSet(netip.IPv6Loopback(), secondSet)},
		{"empty", tb.AddSet(pub, portset.Range{})},
		{"overlap", tb.AddSet(pub, portset.Range{First: 4096 + 32, Size: 64})},
	} {
		if !errors.Is(c.err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", c.name, c.err)
		}
	}
	for i := 1; i < MaxSets; i++ {
		if err := tb.AddSet(pub, portset.Range{First: uint16(8192 + 64*i), Size: 64}); err != nil {
			t.Fatalf("set %d: %v", i, err)
		}
	}
	if err := tb.AddSet(pub, portset.Range{First: 60000, Size: 64}); !errors.Is(err, ErrInvalid) {
		t.Errorf("set past MaxSets: %v", err)
	}
	if n := len(tb.Stats().Sets); n != MaxSets {
		t.Errorf("%d sets, want %d", n, MaxSets)
	}
}

// The per-set use falls as flows expire, so an added set is seen idle;
// explicit mappings count as use too.
func TestSetUsageFollowsExpiry(t *testing.T) {
	tb, clk := newTable(t, Config{})
	tb.SetExternal(pub, smallSet)
	tb.AddSet(pub, secondSet)
	fill(tb, 10000, 70)
	if s := tb.Stats(); s.Sets[1].Used != 6 {
		t.Fatalf("second set used %d, want 6", s.Sets[1].Used)
	}
	clk.Advance(DefaultUDPTimeout + time.Second)
	tb.Expire()
	if s := tb.Stats(); s.Sets[0].Used != 0 || s.Sets[1].Used != 0 || s.PortsUsed != 0 {
		t.Fatalf("after expiry: %+v", s)
	}
	// Fill the first set with explicit mappings; the next one lands on the second.
	for i := range 64 {
		if _, err := tb.AddExplicit(protoUDP, ap(lanB, uint16(30000+i)), 0, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	ext, err := tb.AddExplicit(protoTCP, ap(lanB, 80), 0, time.Hour)
	if err != nil || !smallSet.Contains(ext) {
		t.Errorf("TCP explicit: %d %v (TCP has its own ports)", ext, err)
	}
	ext, err = tb.AddExplicit(protoUDP, ap(lanB, 31000), 0, time.Hour)
	if err != nil || !secondSet.Contains(ext) {
		t.Errorf("65th UDP explicit: %d %v, want a second-set port", ext, err)
	}
	if s := tb.Stats(); s.Sets[1].Used != 1 || s.Explicit != 66 {
		t.Errorf("explicit use: %+v", s)
	}
}

// BenchmarkOutboundNewMappingsTwoSets opens a new mapping each time with the
// first set full, so every allocation probes into the second set; mappings
// are recycled by RemoveSet and AddSet. 0 allocations per packet.
func BenchmarkOutboundNewMappingsTwoSets(b *testing.B) {
	tb := New(Config{MaxSessions: 1 << 20})
	if err := tb.SetExternal(pub, smallSet); err != nil {
		b.Fatal(err)
	}
	if _, err := fill(tb, 10000, 64); err != nil {
		b.Fatal(err)
	}
	big := portset.Range{First: 16384, Size: 16384}
	tb.AddSet(pub, big)
	tmpl := udpPacket(ap(lanB, 0), ap(remote1, 53), nil)
	buf := clone(tmpl)
	var i int
	b.ReportAllocs()
	for b.Loop() {
		if i%8192 == 0 {
			b.StopTimer()
			tb.RemoveSet(big)
			tb.AddSet(pub, big)
			b.StartTimer()
		}
		i++
		copy(buf, tmpl)
		buf[20], buf[21] = byte(i>>8), byte(i)
		if _, err := tb.Outbound(buf); err != nil {
			b.Fatal(err)
		}
	}
}
