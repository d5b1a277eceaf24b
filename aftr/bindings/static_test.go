package bindings

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/portset"
)

func TestRemoveStatic(t *testing.T) {
	c := newClock()
	tb := New(Config{Now: c.Now})
	s1 := static(b4(1), "203.0.113.2", 0, 6, 5)
	s2 := static(b4(2), "203.0.113.2", 0, 6, 4)
	for _, b := range []Binding{s1, s2} {
		if err := tb.AddStatic(b); err != nil {
			t.Fatal(err)
		}
	}
	dyn := Binding{B4: b4(3), IPv4: netip.MustParseAddr("203.0.113.2"), PSID: portset.PSID{Length: 6, ID: 7}, BR: br2, Expires: c.Now().Add(time.Hour)}
	if err := tb.Restore(dyn); err != nil {
		t.Fatal(err)
	}
	// Not there, or not static, or another B4's: refused, nothing changes.
	for _, b := range []Binding{
		static(b4(1), "203.0.113.2", 0, 6, 6),                        // empty PSID
		static(b4(3), "203.0.113.2", 0, 6, 7),                        // the dynamic one
		static(b4(2), "203.0.113.2", 0, 6, 5),                        // s1's slot, wrong B4
		static(b4(1), "203.0.113.2", 6, 6, 5),                        // other PSID parameters
		static(b4(1), "203.0.113.3", 0, 6, 5),                        // no such address
		{B4: b4(1), IPv4: netip.MustParseAddr("0.0.0.0")},            // invalid
		{B4: netip.Addr{}, IPv4: netip.MustParseAddr("203.0.113.2")}, // invalid
	} {
		if err := tb.RemoveStatic(b); !errors.Is(err, ErrInvalid) {
			t.Errorf("RemoveStatic(%v) = %v, want ErrInvalid", b, err)
		}
	}
	if tb.Len() != 3 {
		t.Fatalf("Len = %d after refused removals", tb.Len())
	}
	// The BR is not compared.
	r := s1
	r.BR = br2
	if err := tb.RemoveStatic(r); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := tb.Lookup(a4("203.0.113.2"), 5*1024); ok || tb.Len() != 2 || len(tb.ByB4(b4(1))) != 0 {
		t.Error("removed static binding still there")
	}
	if got, _, ok := tb.Lookup(a4("203.0.113.2"), 7*1024); !ok || got != b4(3) {
		t.Error("dynamic binding lost")
	}
	// The slot is free for a new static binding of another B4.
	if err := tb.AddStatic(static(b4(9), "203.0.113.2", 0, 6, 5)); err != nil {
		t.Fatal(err)
	}
	// Removing the last binding of an address frees the address.
	if err := tb.RemoveStatic(static(b4(9), "203.0.113.2", 0, 6, 5)); err != nil {
		t.Fatal(err)
	}
	if err := tb.RemoveStatic(s2); err != nil {
		t.Fatal(err)
	}
	if n := tb.Remove(b4(3)); n != 1 {
		t.Fatalf("Remove = %d", n)
	}
	if tb.HasIPv4(a4("203.0.113.2")) || tb.Len() != 0 {
		t.Error("empty address kept")
	}
	// Now another (a, k) is accepted on it.
	if err := tb.AddStatic(static(b4(1), "203.0.113.2", 6, 8, 0x34)); err != nil {
		t.Fatal(err)
	}
}

func TestReplaceStatics(t *testing.T) {
	c := newClock()
	tb := New(Config{Now: c.Now})
	keep := static(b4(1), "203.0.113.2", 0, 6, 1)
	gone := static(b4(2), "203.0.113.2", 0, 6, 2)
	old := static(b4(3), "203.0.113.2", 0, 6, 3)
	if _, err := tb.AddStatics([]Binding{keep, gone, old}); err != nil {
		t.Fatal(err)
	}
	dyn := Binding{B4: b4(7), IPv4: netip.MustParseAddr("203.0.113.2"), PSID: portset.PSID{Length: 6, ID: 9}, BR: br2, Expires: c.Now().Add(time.Hour)}
	if err := tb.Restore(dyn); err != nil {
		t.Fatal(err)
	}
	before := tb.Snapshot()

	changed := static(b4(4), "203.0.113.2", 0, 6, 3) // old's port set, another B4
	added := static(b4(5), "203.0.113.2", 0, 6, 4)
	// A failing add in the middle: everything is put back.
	onDyn := static(b4(6), "203.0.113.2", 0, 6, 9)
	i, err := tb.ReplaceStatics([]Binding{gone, old}, []Binding{changed, added, onDyn})
	if !errors.Is(err, ErrConflict) || i != 4 {
		t.Fatalf("ReplaceStatics onto a dynamic binding = %d, %v; want 4, ErrConflict", i, err)
	}
	if after := tb.Snapshot(); !slices.Equal(after, before) {
		t.Fatalf("after a refused replace:\n%v\nwant\n%v", after, before)
	}
	// A failing removal: put back too.
	i, err = tb.ReplaceStatics([]Binding{gone, dyn}, nil)
	if !errors.Is(err, ErrInvalid) || i != 1 {
		t.Fatalf("ReplaceStatics removing a dynamic binding = %d, %v", i, err)
	}
	if after := tb.Snapshot(); !slices.Equal(after, before) {
		t.Fatalf("after a refused removal:\n%v\nwant\n%v", after, before)
	}
	// Other PSID parameters on an address still in use: refused.
	if _, err := tb.ReplaceStatics(nil, []Binding{static(b4(5), "203.0.113.2", 6, 8, 1)}); !errors.Is(err, ErrConflict) {
		t.Fatalf("other (a, k): %v", err)
	}
	// The good one.
	if _, err := tb.ReplaceStatics([]Binding{gone, old}, []Binding{changed, added}); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		psid uint16
		b4   netip.Addr
		ok   bool
	}{{1, b4(1), true}, {2, netip.Addr{}, false}, {3, b4(4), true}, {4, b4(5), true}, {9, b4(7), true}} {
		got, _, ok := tb.Lookup(a4("203.0.113.2"), w.psid*1024)
		if ok != w.ok || got != w.b4 {
			t.Errorf("psid %d: %v %v, want %v %v", w.psid, got, ok, w.b4, w.ok)
		}
	}
	if got := tb.ByB4(b4(7)); len(got) != 1 || got[0].Static || !got[0].Expires.Equal(dyn.Expires) {
		t.Errorf("dynamic binding = %v", got)
	}
	if tb.Len() != 4 {
		t.Errorf("Len = %d, want 4", tb.Len())
	}
}
