package bindings

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/portset"
)

// clock is a fake clock safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var (
	br1 = netip.MustParseAddr("2001:db8:ffff::1")
	br2 = netip.MustParseAddr("2001:db8:ffff::2")
)

func b4(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 14: byte(i >> 8), 15: byte(i)})
}

func a4(s string) [4]byte { return netip.MustParseAddr(s).As4() }

func static(b4 netip.Addr, ip string, a, k uint8, psid uint16) Binding {
	return Binding{B4: b4, IPv4: netip.MustParseAddr(ip), PSID: portset.PSID{Offset: a, Length: k, ID: psid}, BR: br1, Static: true}
}

// RFC 7597 §5.1 (and PROTOCOL.md §3.3 check value): a=6, k=8, PSID 0x34 is
// ports 1232-1235, 2256-2259, …, 64720-64723, 63 ranges; block A = 0
// (ports 0-1023, here 208-211 carry PSID 0x34) belongs to no one.
func TestStaticRFC7597Example(t *testing.T) {
	tb := New(Config{})
	if err := tb.AddStatic(static(b4(1), "192.0.2.1", 6, 8, 0x34)); err != nil {
		t.Fatal(err)
	}
	ip := a4("192.0.2.1")
	for _, p := range []uint16{1232, 1235, 2256, 2259, 64720, 64723} {
		got, br, ok := tb.Lookup(ip, p)
		if !ok || got != b4(1) || br != br1 {
			t.Errorf("Lookup(%d) = %v %v %v, want %v %v", p, got, br, ok, b4(1), br1)
		}
		if !tb.Check(b4(1), ip, p) {
			t.Errorf("Check(%d) = false", p)
		}
	}
	for _, p := range []uint16{208, 209, 211, 1231, 1236, 2255, 64724, 0, 65535} {
		if _, _, ok := tb.Lookup(ip, p); ok {
			t.Errorf("Lookup(%d) matched", p)
		}
		if tb.Check(b4(1), ip, p) {
			t.Errorf("Check(%d) = true", p)
		}
	}
	n := 0
	for p := range 1 << 16 {
		if _, _, ok := tb.Lookup(ip, uint16(p)); ok {
			n++
		}
	}
	if n != 63*4 {
		t.Errorf("%d ports match, want 252", n)
	}
	if _, _, ok := tb.Lookup(a4("192.0.2.2"), 1232); ok {
		t.Error("Lookup on another address matched")
	}
}

// RFC 7597 §5.1: a and k MUST be the same for every CE sharing an address;
// a conflicting insert fails, names both parameter sets and changes nothing.
func TestConflictingPSIDParameters(t *testing.T) {
	tb := New(Config{})
	if err := tb.AddStatic(static(b4(1), "192.0.2.1", 6, 8, 0x34)); err != nil {
		t.Fatal(err)
	}
	err := tb.AddStatic(static(b4(2), "192.0.2.1", 0, 6, 3))
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "a=0,k=6") || !strings.Contains(err.Error(), "a=6,k=8") {
		t.Fatalf("conflicting parameters: %v", err)
	}
	// Same (address, PSID) for another B4.
	if err := tb.AddStatic(static(b4(2), "192.0.2.1", 6, 8, 0x34)); !errors.Is(err, ErrConflict) {
		t.Fatalf("PSID taken: %v", err)
	}
	// The same binding again is a no-op.
	if err := tb.AddStatic(static(b4(1), "192.0.2.1", 6, 8, 0x34)); err != nil {
		t.Fatal(err)
	}
	if tb.Len() != 1 {
		t.Fatalf("Len = %d", tb.Len())
	}
	if got, _, ok := tb.Lookup(a4("192.0.2.1"), 1232); !ok || got != b4(1) {
		t.Fatal("table changed by a failed insert")
	}
	// Another PSID with the same parameters is fine.
	if err := tb.AddStatic(static(b4(2), "192.0.2.1", 6, 8, 0x35)); err != nil {
		t.Fatal(err)
	}
}

// RFC 7596 §6.2: upstream, forward only if the IPv6 and IPv4 sources match
// one entry and the source port is in its set.
func TestCheckUpstream(t *testing.T) {
	tb := New(Config{})
	for i, b := range []Binding{
		static(b4(1), "198.51.100.1", 0, 6, 1),
		static(b4(2), "198.51.100.1", 0, 6, 2),
		static(b4(3), "198.51.100.2", 6, 8, 0x34),
	} {
		if err := tb.AddStatic(b); err != nil {
			t.Fatal(i, err)
		}
	}
	ip := a4("198.51.100.1")
	cases := []struct {
		b4   netip.Addr
		ip   [4]byte
		port uint16
		want bool
	}{
		{b4(1), ip, 1024, true},
		{b4(1), ip, 2047, true},
		{b4(1), ip, 2048, false},                 // b4(2)'s port
		{b4(2), ip, 2048, true},                  //
		{b4(1), ip, 3000, false},                 // no set holds it
		{b4(1), ip, 80, false},                   // PSID 0: nobody's
		{b4(1), a4("198.51.100.3"), 1024, false}, // unbound address
		{b4(3), a4("198.51.100.2"), 1232, true},
		{b4(3), a4("198.51.100.2"), 208, false}, // block A = 0
		{netip.Addr{}, ip, 1024, false},
		{netip.MustParseAddr("198.51.100.1"), ip, 1024, false},
	}
	for _, c := range cases {
		if got := tb.Check(c.b4, c.ip, c.port); got != c.want {
			t.Errorf("Check(%v, %v, %d) = %v, want %v", c.b4, c.ip, c.port, got, c.want)
		}
	}
}

// Bad input is an error, never a panic, and leaves the table as it was.
func TestInvalidStatic(t *testing.T) {
	tb := New(Config{})
	good := static(b4(1), "192.0.2.1", 0, 6, 1)
	if err := tb.AddStatic(good); err != nil {
		t.Fatal(err)
	}
	mod := func(f func(*Binding)) Binding { b := good; b.B4 = b4(9); f(&b); return b }
	bad := []Binding{
		{},
		mod(func(b *Binding) { b.B4 = netip.Addr{} }),
		mod(func(b *Binding) { b.B4 = netip.MustParseAddr("192.0.2.9") }),
		mod(func(b *Binding) { b.B4 = netip.MustParseAddr("::ffff:192.0.2.9") }),
		mod(func(b *Binding) { b.B4 = netip.MustParseAddr("ff02::1") }),
		mod(func(b *Binding) { b.B4 = netip.MustParseAddr("::") }),
		mod(func(b *Binding) { b.B4 = netip.MustParseAddr("fe80::1%eth0") }),
		mod(func(b *Binding) { b.BR = netip.Addr{} }),
		mod(func(b *Binding) { b.IPv4 = netip.Addr{} }),
		mod(func(b *Binding) { b.IPv4 = netip.MustParseAddr("2001:db8::1") }),
		mod(func(b *Binding) { b.IPv4 = netip.MustParseAddr("0.0.0.0") }),
		mod(func(b *Binding) { b.IPv4 = netip.MustParseAddr("224.0.0.1") }),
		mod(func(b *Binding) { b.IPv4 = netip.MustParseAddr("255.255.255.255") }),
		mod(func(b *Binding) { b.PSID = portset.PSID{Offset: 0, Length: 6, ID: 64} }),
		mod(func(b *Binding) { b.PSID = portset.PSID{Offset: 10, Length: 8, ID: 1} }),
		mod(func(b *Binding) { b.PSID = portset.PSID{Offset: 1, Length: 16, ID: 1} }),
	}
	for i, b := range bad {
		if err := tb.AddStatic(b); !errors.Is(err, ErrInvalid) {
			t.Errorf("%d: AddStatic(%v) = %v, want ErrInvalid", i, b, err)
		}
		if err := tb.Restore(b); err == nil {
			t.Errorf("%d: Restore(%v) succeeded", i, b)
		}
	}
	if got := tb.Snapshot(); len(got) != 1 || got[0].B4 != b4(1) {
		t.Fatalf("table changed: %v", got)
	}
	if tb.ByB4(netip.Addr{}) != nil || tb.Remove(netip.Addr{}) != 0 {
		t.Fatal("zero address matched")
	}
	// IPv4-mapped public addresses are accepted and stored unmapped.
	b := static(b4(2), "::ffff:192.0.2.1", 0, 6, 2)
	if err := tb.AddStatic(b); err != nil {
		t.Fatal(err)
	}
	if got := tb.ByB4(b4(2)); len(got) != 1 || !got[0].IPv4.Is4() {
		t.Fatalf("ByB4 = %v", got)
	}
}

// RFC 7596 §6.1: the table is the 3-tuple {B4 /128, IPv4, port set}; a B4
// may hold several static bindings; Snapshot is ordered.
func TestSnapshotByB4Remove(t *testing.T) {
	c := newClock()
	tb := New(Config{Now: c.Now})
	for _, b := range []Binding{
		static(b4(1), "203.0.113.9", 0, 0, 0), // a whole address
		static(b4(1), "203.0.113.2", 0, 6, 5),
		static(b4(2), "203.0.113.2", 0, 6, 4),
	} {
		if err := tb.AddStatic(b); err != nil {
			t.Fatal(err)
		}
	}
	dyn := Binding{B4: b4(3), IPv4: netip.MustParseAddr("203.0.113.2"), PSID: portset.PSID{Length: 6, ID: 7}, BR: br2, Expires: c.Now().Add(time.Hour)}
	if err := tb.Restore(dyn); err != nil {
		t.Fatal(err)
	}
	snap := tb.Snapshot()
	if len(snap) != 4 || tb.Len() != 4 {
		t.Fatalf("Snapshot = %v", snap)
	}
	want := []struct {
		ip   string
		psid uint16
	}{{"203.0.113.2", 4}, {"203.0.113.2", 5}, {"203.0.113.2", 7}, {"203.0.113.9", 0}}
	for i, w := range want {
		if snap[i].IPv4.String() != w.ip || snap[i].PSID.ID != w.psid {
			t.Errorf("Snapshot[%d] = %v, want %s psid %d", i, snap[i], w.ip, w.psid)
		}
	}
	if !snap[2].Expires.Equal(dyn.Expires) || snap[2].Static || snap[2].BR != br2 {
		t.Errorf("dynamic binding = %+v", snap[2])
	}
	if got := tb.ByB4(b4(1)); len(got) != 2 {
		t.Fatalf("ByB4 = %v", got)
	}
	if r := (&snap[3]).Ports(); r.Len() != 65536 || !r.Contains(0) {
		t.Errorf("whole address Ports() = %v", r)
	}
	if r, ok := snap[2].Ports().(portset.Range); !ok || r.First != 7*1024 || r.Size != 1024 {
		t.Errorf("Ports() = %v", snap[2].Ports())
	}
	if got, br, ok := tb.Lookup(a4("203.0.113.2"), 7*1024+5); !ok || got != b4(3) || br != br2 {
		t.Errorf("Lookup dynamic = %v %v %v", got, br, ok)
	}
	// Remove takes dynamic bindings only.
	if n := tb.Remove(b4(1)); n != 0 {
		t.Errorf("Remove(static B4) = %d", n)
	}
	if n := tb.Remove(b4(3)); n != 1 {
		t.Errorf("Remove = %d", n)
	}
	if _, _, ok := tb.Lookup(a4("203.0.113.2"), 7*1024); ok || tb.Len() != 3 {
		t.Error("removed binding still there")
	}
	// Restore refuses a second dynamic binding for one B4 and an occupied PSID.
	if err := tb.Restore(dyn); err != nil {
		t.Fatal(err)
	}
	d2 := dyn
	d2.PSID.ID = 8
	if err := tb.Restore(d2); !errors.Is(err, ErrConflict) {
		t.Errorf("second dynamic binding: %v", err)
	}
	d3 := dyn
	d3.B4 = b4(4)
	if err := tb.Restore(d3); !errors.Is(err, ErrConflict) {
		t.Errorf("occupied PSID: %v", err)
	}
}

// RFC 7596 §6.1: binding lifetime follows the allocation lifetime; an
// expired dynamic binding is absent for Lookup, Check, ByB4 and Snapshot.
func TestExpiredDynamicAbsent(t *testing.T) {
	c := newClock()
	tb := New(Config{Now: c.Now})
	d := Binding{B4: b4(1), IPv4: netip.MustParseAddr("192.0.2.7"), PSID: portset.PSID{Length: 4, ID: 2}, BR: br1, Expires: c.Now().Add(time.Minute)}
	if err := tb.Restore(d); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := tb.Lookup(a4("192.0.2.7"), 8192); !ok {
		t.Fatal("live binding absent")
	}
	c.Advance(time.Minute)
	if _, _, ok := tb.Lookup(a4("192.0.2.7"), 8192); ok {
		t.Error("expired binding found by Lookup")
	}
	if tb.Check(b4(1), a4("192.0.2.7"), 8192) || len(tb.ByB4(b4(1))) != 0 || len(tb.Snapshot()) != 0 {
		t.Error("expired binding visible")
	}
	// The batch forms take the caller's clock reading.
	if _, _, ok := tb.LookupAt(a4("192.0.2.7"), 8192, c.Now()); ok || tb.CheckAt(b4(1), a4("192.0.2.7"), 8192, c.Now()) {
		t.Error("expired binding visible to LookupAt/CheckAt")
	}
	earlier := c.Now().Add(-time.Second)
	if _, _, ok := tb.LookupAt(a4("192.0.2.7"), 8192, earlier); !ok || !tb.CheckAt(b4(1), a4("192.0.2.7"), 8192, earlier) {
		t.Error("LookupAt/CheckAt ignore now")
	}
}

// The data-plane lookups do not allocate (DESIGN.md "AFTR").
func TestLookupZeroAlloc(t *testing.T) {
	c := newClock()
	tb := New(Config{Now: c.Now})
	if err := tb.AddStatic(static(b4(1), "192.0.2.1", 6, 8, 0x34)); err != nil {
		t.Fatal(err)
	}
	d := Binding{B4: b4(2), IPv4: netip.MustParseAddr("192.0.2.2"), PSID: portset.PSID{Length: 10, ID: 100}, BR: br1, Expires: c.Now().Add(time.Hour)}
	if err := tb.Restore(d); err != nil {
		t.Fatal(err)
	}
	ip1, ip2 := a4("192.0.2.1"), a4("192.0.2.2")
	now := c.Now()
	n := testing.AllocsPerRun(1000, func() {
		tb.Lookup(ip1, 1233)
		tb.Lookup(ip2, 6400)
		tb.Lookup(ip2, 100)
		tb.Check(b4(1), ip1, 1233)
		tb.Check(b4(2), ip2, 6401)
		tb.LookupAt(ip2, 6400, now)
		tb.CheckAt(b4(2), ip2, 6401, now)
	})
	if n != 0 {
		t.Fatalf("%v allocations per run", n)
	}
}

// AddStatics installs a batch under one lock and stops at the first
// binding that fails, saying which; those before it stay installed.
func TestAddStatics(t *testing.T) {
	tb := New(Config{})
	batch := []Binding{
		static(b4(1), "192.0.2.1", 0, 6, 1),
		static(b4(2), "192.0.2.1", 0, 6, 2),
		static(b4(3), "192.0.2.1", 0, 6, 1), // PSID 1 is b4(1)'s
		static(b4(4), "192.0.2.1", 0, 6, 4),
	}
	i, err := tb.AddStatics(batch)
	if i != 2 || !errors.Is(err, ErrConflict) {
		t.Fatalf("AddStatics = %d, %v; want 2, ErrConflict", i, err)
	}
	if tb.Len() != 2 {
		t.Errorf("Len = %d, want the 2 before the failure", tb.Len())
	}
	if i, err := tb.AddStatics(batch[3:]); i != 1 || err != nil {
		t.Errorf("AddStatics = %d, %v", i, err)
	}
	if got, _, ok := tb.Lookup(a4("192.0.2.1"), 4*1024); !ok || got != b4(4) {
		t.Errorf("PSID 4 → %v %v", got, ok)
	}
}
