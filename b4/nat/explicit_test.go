package nat

import (
	"net/netip"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/portset"
)

func avoidPCP(p uint16) bool { return p == 5350 || p == 5351 }

// RFC 6887 §13.3: an explicit mapping with FILTERs admits only the listed
// remote peers (prefix and port), however open the NAT's own filtering.
func TestMapExplicitFilters(t *testing.T) {
	tb, _ := newTable(t, Config{Filtering: EndpointIndependent})
	mi, err := tb.MapExplicit(ExplicitRequest{Proto: protoUDP, Internal: ap(lanA, 5000), Lifetime: time.Hour,
		SetFilters: true, Filters: []Filter{{Prefix: netip.PrefixFrom(remote1, 32), Port: 53}}})
	if err != nil || !testSet.Contains(mi.External) || !mi.Explicit {
		t.Fatalf("MapExplicit = %+v, %v", mi, err)
	}
	if err := tb.Inbound(udpPacket(ap(remote2, 53), ap(pub, mi.External), nil)); err != ErrFiltered {
		t.Fatalf("unlisted peer: %v, want ErrFiltered", err)
	}
	if err := tb.Inbound(udpPacket(ap(remote1, 54), ap(pub, mi.External), nil)); err != ErrFiltered {
		t.Fatalf("listed peer, other port: %v, want ErrFiltered", err)
	}
	mustIn(t, tb, udpPacket(ap(remote1, 53), ap(pub, mi.External), nil))
	// A refresh without SetFilters keeps them; with an empty list they go.
	if _, err := tb.MapExplicit(ExplicitRequest{Proto: protoUDP, Internal: ap(lanA, 5000), Lifetime: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := tb.Inbound(udpPacket(ap(remote2, 53), ap(pub, mi.External), nil)); err != ErrFiltered {
		t.Fatalf("after a plain refresh: %v, want ErrFiltered", err)
	}
	if _, err := tb.MapExplicit(ExplicitRequest{Proto: protoUDP, Internal: ap(lanA, 5000), Lifetime: time.Hour, SetFilters: true}); err != nil {
		t.Fatal(err)
	}
	mustIn(t, tb, udpPacket(ap(remote2, 53), ap(pub, mi.External), nil))
}

// RFC 6887 §13.2, §11.3: Exact takes only the suggested port; Avoid keeps
// 5350/5351 out of every new mapping.
func TestMapExplicitExactAndAvoid(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	tb := New(Config{Now: clk.Now})
	small := portset.Range{First: 5348, Size: 4} // 5348-5351
	if err := tb.SetExternal(pub, small); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.MapExplicit(ExplicitRequest{Proto: protoUDP, Internal: ap(lanA, 1), Suggested: 5351, Exact: true, Lifetime: time.Hour, Avoid: avoidPCP}); err != ErrPortUnavailable {
		t.Fatalf("exact 5351: %v", err)
	}
	got := map[uint16]bool{}
	for i := range 3 {
		mi, err := tb.MapExplicit(ExplicitRequest{Proto: protoUDP, Internal: ap(lanA, uint16(10+i)), Suggested: 5350, Lifetime: time.Hour, Avoid: avoidPCP})
		if i == 2 {
			if err != ErrPortsExhausted {
				t.Fatalf("third mapping in a set with two usable ports: %+v %v", mi, err)
			}
			break
		}
		if err != nil || avoidPCP(mi.External) || !small.Contains(mi.External) {
			t.Fatalf("mapping %d: %+v %v", i, mi, err)
		}
		got[mi.External] = true
	}
	if len(got) != 2 {
		t.Fatalf("ports %v", got)
	}
	// Exact on an existing mapping must name its port.
	mi, _ := tb.Mapping(protoUDP, ap(lanA, 10))
	if _, err := tb.MapExplicit(ExplicitRequest{Proto: protoUDP, Internal: ap(lanA, 10), Suggested: mi.External ^ 1, Exact: true, Lifetime: time.Hour}); err != ErrPortUnavailable {
		t.Fatalf("exact other port on existing: %v", err)
	}
	if _, err := tb.MapExplicit(ExplicitRequest{Proto: protoUDP, Internal: ap(lanA, 10), Suggested: mi.External, Exact: true, Lifetime: time.Hour}); err != nil {
		t.Fatalf("exact same port on existing: %v", err)
	}
	if f := tb.Fill(); f.UDP != 2 || f.Explicit != 2 || f.Size != 4 {
		t.Fatalf("Fill = %+v", f)
	}
	if n := len(tb.ExplicitMappings()); n != 2 {
		t.Fatalf("%d explicit mappings", n)
	}
}

// RFC 6887 §12.3: PEER creates the outbound mapping and session and holds
// it for the granted lifetime, past the idle timeout; traffic does not
// shorten it.
func TestPeerHoldsSession(t *testing.T) {
	tb, clk := newTable(t, Config{})
	mi, err := tb.Peer(protoUDP, ap(lanA, 7000), ap(remote1, 9), 0, time.Hour, avoidPCP)
	if err != nil || !testSet.Contains(mi.External) || mi.Explicit {
		t.Fatalf("Peer = %+v, %v", mi, err)
	}
	if mi.IdleLeft != time.Hour {
		t.Fatalf("IdleLeft %v, want 1h", mi.IdleLeft)
	}
	out := udpPacket(ap(lanA, 7000), ap(remote1, 9), nil)
	mustOut(t, tb, out)
	if srcOf(out).Port() != mi.External {
		t.Fatalf("traffic used %d, PEER said %d", srcOf(out).Port(), mi.External)
	}
	clk.Advance(30 * time.Minute)
	mustIn(t, tb, udpPacket(ap(remote1, 9), ap(pub, mi.External), nil))
	clk.Advance(31 * time.Minute)
	if _, ok := tb.Mapping(protoUDP, ap(lanA, 7000)); ok {
		t.Fatal("mapping outlived the PEER lifetime and the idle timeout")
	}
	if _, err := tb.Peer(protoUDP, ap(lanA, 7001), ap(remote1, 9), 4096+3, time.Minute, nil); err != nil {
		t.Fatalf("suggested free port: %v", err)
	}
	if _, err := tb.Peer(protoUDP, ap(lanA, 7002), ap(remote1, 9), 4096+3, time.Minute, nil); err != ErrPortUnavailable {
		t.Fatalf("suggested taken port: %v", err)
	}
	if _, err := tb.Peer(protoUDP, ap(lanA, 7002), netip.AddrPortFrom(netip.MustParseAddr("224.0.0.1"), 9), 0, time.Minute, nil); err == nil {
		t.Fatal("multicast remote peer accepted")
	}
}
