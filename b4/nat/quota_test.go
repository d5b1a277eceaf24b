package nat

import (
	"maps"
	"math"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lw4o6/lw4o6/stack/portset"
)

// checkHosts recounts the per-host state from the table itself and fails
// when the counters disagree, hold a negative or an empty entry (the map
// must be bounded by the table), or, with bounded, when a host holds more
// than its quotas allow: HostSessions, and the port quota plus the host's
// live explicit mappings (counted, never refused, quota.go).
func checkHosts(t testing.TB, tb *Table, bounded bool) {
	t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	want := map[uint32]hostUse{}
	explicit := map[uint32][nProto]int32{}
	for pi := range nProto {
		for _, m := range tb.byInt[pi] {
			h := want[m.intAddr]
			h.ports[pi]++
			want[m.intAddr] = h
			if m.explicit {
				e := explicit[m.intAddr]
				e[pi]++
				explicit[m.intAddr] = e
			}
		}
		for _, s := range tb.sessions[pi] {
			h := want[s.m.intAddr]
			h.sessions++
			want[s.m.intAddr] = h
		}
	}
	if !maps.Equal(want, tb.hosts) {
		t.Fatalf("per-host counters %v, the table holds %v", tb.hosts, want)
	}
	q := tb.portQuota()
	for a, h := range tb.hosts {
		if h == (hostUse{}) {
			t.Fatalf("host %v: an empty entry stays", netip.AddrFrom4(be4(a)))
		}
		if h.sessions < 0 {
			t.Fatalf("host %v: %d sessions", netip.AddrFrom4(be4(a)), h.sessions)
		}
		for pi := range nProto {
			if h.ports[pi] < 0 {
				t.Fatalf("host %v: %d mappings of protocol %d", netip.AddrFrom4(be4(a)), h.ports[pi], pi)
			}
			if bounded && q > 0 && int(h.ports[pi]) > q+int(explicit[a][pi]) {
				t.Fatalf("host %v: %d mappings of protocol %d, quota %d (+%d explicit)",
					netip.AddrFrom4(be4(a)), h.ports[pi], pi, q, explicit[a][pi])
			}
		}
		if bounded && tb.hostSessions > 0 && int(h.sessions) > tb.hostSessions {
			t.Fatalf("host %v: %d sessions, quota %d", netip.AddrFrom4(be4(a)), h.sessions, tb.hostSessions)
		}
	}
}

// RFC 6888 REQ-4, REQ-11 (issue 11 item 7): a host that opens flows past
// its port quota has them dropped, counted as HostQuota, its packets
// untouched, nothing existing removed; its existing flows go on, its
// other protocols have their own quota, and another host still gets
// ports. The quota frees as the host's flows expire, without waiting for
// Expire; when everything is gone no per-host entry remains.
func TestHostPortQuota(t *testing.T) {
	tb, clk := newTable(t, Config{HostPorts: 8})
	for i := range 12 {
		b := udpPacket(ap(lanA, uint16(40000+i)), ap(remote1, 53), nil)
		in := clone(b)
		_, err := tb.Outbound(b)
		switch {
		case i < 8 && err != nil:
			t.Fatalf("flow %d within the quota: %v", i, err)
		case i >= 8 && err != ErrHostQuota:
			t.Fatalf("flow %d past the quota: %v, want ErrHostQuota", i, err)
		case i >= 8 && string(b) != string(in):
			t.Fatalf("flow %d: refused packet modified", i)
		}
	}
	st := tb.Stats()
	if st.DropOut.HostQuota != 4 || st.DropOut.PortsExhausted != 0 || st.AllocFailures != 0 || st.UDPSessions != 8 {
		t.Fatalf("after the flood: %+v", st)
	}
	if u := tb.HostUsage(lanA); u != (HostUsage{UDP: 8, Sessions: 8}) {
		t.Fatalf("host A uses %+v", u)
	}
	// An existing flow goes on, to a new destination too (same mapping,
	// a new session: within the session quota, which is none here).
	mustOut(t, tb, udpPacket(ap(lanA, 40000), ap(remote1, 53), nil))
	mustOut(t, tb, udpPacket(ap(lanA, 40000), ap(remote2, 53), nil))
	// Inbound to an existing mapping is not a new mapping.
	out := udpPacket(ap(lanA, 40001), ap(remote1, 53), nil)
	mustOut(t, tb, out)
	mustIn(t, tb, udpPacket(ap(remote1, 53), srcOf(out), nil))
	// TCP and ICMP have their own ports and their own quota.
	mustOut(t, tb, tcpPacket(ap(lanA, 40000), ap(remote1, 443), header.TCPFlagSyn, nil))
	mustOut(t, tb, echoPacket(lanA, remote1, header.ICMPv4Echo, 7, 1, nil))
	// Host B is not affected.
	for i := range 8 {
		mustOut(t, tb, udpPacket(ap(lanB, uint16(40000+i)), ap(remote1, 53), nil))
	}
	if st := tb.Stats(); st.Hosts != 2 || st.HostPortQuota != 8 {
		t.Fatalf("Hosts %d, HostPortQuota %d", st.Hosts, st.HostPortQuota)
	}
	checkHosts(t, tb, true)

	// The flows idle out: A gets new ones at once (the quota check sweeps
	// the dead entries), without Expire having run.
	clk.Advance(DefaultUDPTimeout + time.Second)
	for i := range 8 {
		mustOut(t, tb, udpPacket(ap(lanA, uint16(41000+i)), ap(remote1, 53), nil))
	}
	if _, err := tb.Outbound(udpPacket(ap(lanA, 41008), ap(remote1, 53), nil)); err != ErrHostQuota {
		t.Fatalf("ninth new flow: %v", err)
	}
	checkHosts(t, tb, true)
	clk.Advance(DefaultTCPEstablishedTimeout + time.Second)
	tb.Expire()
	checkHosts(t, tb, true)
	if st := tb.Stats(); st.Hosts != 0 || st.Mappings != 0 {
		t.Fatalf("after every flow expired: %d hosts, %d mappings", st.Hosts, st.Mappings)
	}
}

// The default port quota is a share of the ports held, and follows them
// as sets come and go; at least one port.
func TestHostPortShare(t *testing.T) {
	tb, _ := newTable(t, Config{HostPortShare: DefaultHostPortShare})
	if q := tb.Stats().HostPortQuota; q != testSet.Len()/4 {
		t.Fatalf("quota %d of %d ports, want a quarter", q, testSet.Len())
	}
	extra := portset.Range{First: 8192, Size: 1024}
	if err := tb.AddSet(pub, extra); err != nil {
		t.Fatal(err)
	}
	if q := tb.Stats().HostPortQuota; q != 512 {
		t.Fatalf("quota %d of 2048 ports, want 512", q)
	}
	for i := range 512 {
		mustOut(t, tb, udpPacket(ap(lanA, uint16(20000+i)), ap(remote1, 53), nil))
	}
	if _, err := tb.Outbound(udpPacket(ap(lanA, 30000), ap(remote1, 53), nil)); err != ErrHostQuota {
		t.Fatalf("past a quarter of 2048: %v", err)
	}
	if err := tb.SetExternal(pub, portset.Range{First: 4096, Size: 2}); err != nil {
		t.Fatal(err)
	}
	if q := tb.Stats().HostPortQuota; q != 1 {
		t.Fatalf("quota %d of 2 ports, want 1 (at least one)", q)
	}
	checkHosts(t, tb, false) // the smaller set kept what fits, over the new quota
}

// RFC 6888 REQ-5: a host's sessions are bounded, whichever side opens
// them: an Internet host adding sessions to a host's mapping (endpoint-
// independent filtering) is refused past the quota too, counted inbound,
// and the other hosts keep their room in the session table.
func TestHostSessionQuota(t *testing.T) {
	tb, clk := newTable(t, Config{HostSessions: 4})
	out := udpPacket(ap(lanA, 40000), ap(remote1, 1), nil)
	mustOut(t, tb, out)
	ext := srcOf(out)
	for i := 2; i <= 4; i++ {
		mustOut(t, tb, udpPacket(ap(lanA, 40000), ap(remote1, uint16(i)), nil))
	}
	b := udpPacket(ap(lanA, 40000), ap(remote1, 5), nil)
	if _, err := tb.Outbound(b); err != ErrHostQuota {
		t.Fatalf("fifth session out: %v", err)
	}
	if err := tb.Inbound(udpPacket(ap(remote2, 9), ext, nil)); err != ErrHostQuota {
		t.Fatalf("a new remote inbound past the quota: %v", err)
	}
	// Its sessions go on, both ways.
	mustOut(t, tb, udpPacket(ap(lanA, 40000), ap(remote1, 2), nil))
	mustIn(t, tb, udpPacket(ap(remote1, 3), ext, nil))
	for i := range 4 {
		mustOut(t, tb, udpPacket(ap(lanB, 40000), ap(remote1, uint16(i+1)), nil))
	}
	st := tb.Stats()
	if st.DropOut.HostQuota != 1 || st.DropIn.HostQuota != 1 || st.HostSessionQuota != 4 || st.UDPSessions != 8 {
		t.Fatalf("stats %+v", st)
	}
	checkHosts(t, tb, true)
	clk.Advance(DefaultUDPTimeout + time.Second)
	mustOut(t, tb, b)
	checkHosts(t, tb, true)
}

// Explicit mappings (the LAN PCP server's, which has its own per-host
// quota, RFC 6887 USER_EX_QUOTA) are counted in the host's ports but never
// refused by the NAT's quota: a host's explicit mappings leave it that much
// less room for implicit ones, and room comes back when they go.
func TestHostQuotaExplicit(t *testing.T) {
	tb, _ := newTable(t, Config{HostPorts: 4})
	for i := range 3 {
		if _, err := tb.AddExplicit(protoUDP, ap(lanA, uint16(5000+i)), 0, time.Hour); err != nil {
			t.Fatalf("AddExplicit %d: %v", i, err)
		}
	}
	for i := range 3 {
		if _, err := tb.MapExplicit(ExplicitRequest{Proto: protoUDP, Internal: ap(lanA, uint16(6000+i)), Lifetime: time.Hour}); err != nil {
			t.Fatalf("MapExplicit %d (past the NAT quota: the PCP server's quota governs): %v", i, err)
		}
	}
	if u := tb.HostUsage(lanA); u.UDP != 6 {
		t.Fatalf("host A: %+v, want its 6 explicit mappings counted", u)
	}
	if _, err := tb.Outbound(udpPacket(ap(lanA, 40000), ap(remote1, 53), nil)); err != ErrHostQuota {
		t.Fatalf("an implicit mapping with 6 explicit ones held: %v", err)
	}
	// An explicit mapping's own traffic is no new mapping.
	mustOut(t, tb, udpPacket(ap(lanA, 5000), ap(remote1, 53), nil))
	checkHosts(t, tb, true)
	for i := range 3 {
		if _, err := tb.RemoveExplicit(protoUDP, ap(lanA, uint16(6000+i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tb.RemoveExplicit(protoUDP, ap(lanA, 5001)); err != nil {
		t.Fatal(err)
	}
	// 5000 and 5002 remain, explicit: 2 of 4.
	mustOut(t, tb, udpPacket(ap(lanA, 40000), ap(remote1, 53), nil))
	mustOut(t, tb, udpPacket(ap(lanA, 40001), ap(remote1, 53), nil))
	if _, err := tb.Outbound(udpPacket(ap(lanA, 40002), ap(remote1, 53), nil)); err != ErrHostQuota {
		t.Fatalf("fifth mapping: %v", err)
	}
	checkHosts(t, tb, true)
}

// No quota is the zero Config; hostile values are refused by
// ValidateQuotas and mean no quota to New.
func TestQuotaConfig(t *testing.T) {
	for _, c := range []Config{
		{HostPorts: -1}, {HostSessions: -1}, {HostPortShare: -0.1}, {HostPortShare: 1.5}, {HostPortShare: math.NaN()},
	} {
		if err := c.ValidateQuotas(); err == nil {
			t.Errorf("%+v accepted", c)
		}
		if st := New(c).Stats(); st.HostPortQuota != 0 || st.HostSessionQuota != 0 {
			t.Errorf("%+v: quotas %d, %d", c, st.HostPortQuota, st.HostSessionQuota)
		}
	}
	for _, c := range []Config{{}, {HostPorts: 10, HostPortShare: 1, HostSessions: 1}} {
		if err := c.ValidateQuotas(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	tb, _ := newTable(t, Config{})
	for i := range 1024 {
		mustOut(t, tb, udpPacket(ap(lanA, uint16(20000+i)), ap(remote1, 53), nil))
	}
	if _, err := tb.Outbound(udpPacket(ap(lanB, 20000), ap(remote1, 53), nil)); err != ErrPortsExhausted {
		t.Fatalf("without a quota one host takes the whole set: %v", err)
	}
}
