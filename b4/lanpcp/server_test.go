package lanpcp

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/b4/nat"
	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
	"github.com/lw4o6/lw4o6/stack/portset"
)

// RFC 6887 §11.3, §15, RFC 7220: a MAP gets a port of the set on the
// public address, the lifetime clamped to the configured range, the
// DESCRIPTION echoed; the NAT holds the explicit mapping.
func TestMapInSetLifetimeDescription(t *testing.T) {
	f := newFixture(t, true, nil)
	m := f.mapOK(hostA, mapOpts{proto: 6, iport: 80, lifetime: 10, nonce: nonce1, opts: []pcp.Option{pcp.DescriptionOption("web")}})
	if m.Lifetime != 120 {
		t.Errorf("lifetime %d, want the minimum 120", m.Lifetime)
	}
	if d, ok, _ := m.Description(); !ok || d != "web" {
		t.Errorf("DESCRIPTION %q %v not echoed", d, ok)
	}
	mi, ok := f.nat.Mapping(6, netip.AddrPortFrom(hostA, 80))
	if !ok || !mi.Explicit || mi.External != m.Map.ExternalPort {
		t.Fatalf("NAT mapping %+v %v", mi, ok)
	}
	m = f.mapOK(hostA, mapOpts{proto: 17, iport: 53, lifetime: 10 * 86400, nonce: nonce1})
	if m.Lifetime != 86400 {
		t.Errorf("lifetime %d, want the maximum 86400", m.Lifetime)
	}
	// A refresh keeps the port whatever is suggested (§11.3 item 3).
	again := f.mapOK(hostA, mapOpts{proto: 17, iport: 53, lifetime: 600, nonce: nonce1, suggested: m.Map.ExternalPort ^ 1})
	if again.Map.ExternalPort != m.Map.ExternalPort {
		t.Errorf("refresh moved the mapping %d -> %d", m.Map.ExternalPort, again.Map.ExternalPort)
	}
	ms := f.srv.Mappings()
	if len(ms) != 2 {
		t.Fatalf("Mappings %v", ms)
	}
	for _, x := range ms {
		if x.Owner != "pcp "+hostA.String() {
			t.Errorf("owner %q", x.Owner)
		}
	}
}

// RFC 6887 §11.3, §15.1 (Simple Threat Model): another nonce cannot refresh
// or delete a mapping; another host cannot name it (THIRD_PARTY refused,
// a forged Client IP is ADDRESS_MISMATCH), and an authorised third party
// still needs the nonce.
func TestNonceOwnership(t *testing.T) {
	f := newFixture(t, true, func(c *Config) { c.ThirdParty = []netip.Prefix{netip.PrefixFrom(hostB, 32)} })
	m := f.mapOK(hostA, mapOpts{proto: 6, iport: 8080, lifetime: 3600, nonce: nonce1})
	code, lt := f.code(hostA, mapReq(t, hostA, mapOpts{proto: 6, iport: 8080, lifetime: 3600, nonce: nonce2}))
	if code != pcp.NotAuthorized || lt < 3590 || lt > 3600 {
		t.Errorf("refresh with another nonce: %v lifetime %d, want NOT_AUTHORIZED with the mapping's ~3600 s", code, lt)
	}
	if code, _ := f.code(hostA, mapReq(t, hostA, mapOpts{proto: 6, iport: 8080, nonce: nonce2})); code != pcp.NotAuthorized {
		t.Errorf("delete with another nonce: %v", code)
	}
	// Host B: a delete of "its" 8080 touches only its own (absent) one.
	if code, _ := f.code(hostB, mapReq(t, hostB, mapOpts{proto: 6, iport: 8080, nonce: nonce1})); code != pcp.Success {
		t.Errorf("host B deleting its own nothing: %v", code)
	}
	if code, _ := f.code(hostB, mapReq(t, hostB, mapOpts{proto: 6, iport: 8080, nonce: nonce1, client: hostA})); code != pcp.AddressMismatch {
		t.Errorf("forged client IP: %v", code)
	}
	tp := []pcp.Option{pcp.ThirdPartyOption(hostA)}
	if code, _ := f.code(hostB, mapReq(t, hostB, mapOpts{proto: 6, iport: 8080, nonce: nonce2, opts: tp})); code != pcp.NotAuthorized {
		t.Errorf("third party with another nonce: %v", code)
	}
	// Host A is not allowed THIRD_PARTY (§13.1).
	if code, _ := f.code(hostA, mapReq(t, hostA, mapOpts{proto: 6, iport: 9, lifetime: 60, nonce: nonce2, opts: []pcp.Option{pcp.ThirdPartyOption(hostB)}})); code != pcp.UnsuppOption {
		t.Errorf("THIRD_PARTY from a host not allowed: %v", code)
	}
	if mi, ok := f.nat.Mapping(6, netip.AddrPortFrom(hostA, 8080)); !ok || !mi.Explicit || mi.External != m.Map.ExternalPort {
		t.Fatalf("host A's mapping damaged: %+v %v", mi, ok)
	}
	// The owner deletes it: no traffic, so lifetime 0 (§15).
	if code, lt := f.code(hostA, mapReq(t, hostA, mapOpts{proto: 6, iport: 8080, nonce: nonce1})); code != pcp.Success || lt != 0 {
		t.Errorf("owner's delete: %v %d", code, lt)
	}
	if _, ok := f.nat.Mapping(6, netip.AddrPortFrom(hostA, 8080)); ok {
		t.Fatal("mapping survived its owner's delete")
	}
}

// RFC 6887 §15: a delete cannot end a mapping sooner than its traffic
// would; §15.1: an implicit mapping is not MAP's to delete.
func TestDeleteWithTrafficAndImplicit(t *testing.T) {
	f := newFixture(t, true, nil)
	m := f.mapOK(hostA, mapOpts{proto: 17, iport: 5000, lifetime: 3600, nonce: nonce1})
	out := packet.AppendUDP4(nil, 0, hostA.As4(), remote.As4(), 5000, 53, 64, []byte("q"))
	if _, err := f.nat.Outbound(out); err != nil {
		t.Fatal(err)
	}
	if code, lt := f.code(hostA, mapReq(t, hostA, mapOpts{proto: 17, iport: 5000, nonce: nonce1})); code != pcp.Success || lt != 300 {
		t.Errorf("delete of a mapping with traffic: %v lifetime %d, want SUCCESS 300 (the UDP idle timeout)", code, lt)
	}
	if mi, ok := f.nat.Mapping(17, netip.AddrPortFrom(hostA, 5000)); !ok || mi.Explicit || mi.External != m.Map.ExternalPort {
		t.Errorf("after delete: %+v %v, want the implicit mapping only", mi, ok)
	}
	if code, _ := f.code(hostA, mapReq(t, hostA, mapOpts{proto: 17, iport: 5000, nonce: nonce1})); code != pcp.NotAuthorized {
		t.Errorf("delete of an implicit mapping: %v, want NOT_AUTHORIZED", code)
	}
	// §11.3 item 4: MAP of the outbound mapping's endpoint keeps its port.
	again := f.mapOK(hostA, mapOpts{proto: 17, iport: 5000, lifetime: 3600, nonce: nonce2})
	if again.Map.ExternalPort != m.Map.ExternalPort {
		t.Errorf("MAP over the outbound mapping: port %d, want %d", again.Map.ExternalPort, m.Map.ExternalPort)
	}
}

// Explicit lifetimes run out: the NAT drops the mapping and the nonce no
// longer owns anything.
func TestLifetimeExpiry(t *testing.T) {
	f := newFixture(t, true, nil)
	f.mapOK(hostA, mapOpts{proto: 6, iport: 22, lifetime: 120, nonce: nonce1})
	f.clk.Advance(121 * time.Second)
	f.nat.Expire()
	if _, ok := f.nat.Mapping(6, netip.AddrPortFrom(hostA, 22)); ok {
		t.Fatal("mapping outlived its lifetime")
	}
	if len(f.srv.Mappings()) != 0 {
		t.Fatalf("Mappings %v", f.srv.Mappings())
	}
	f.mapOK(hostA, mapOpts{proto: 6, iport: 22, lifetime: 120, nonce: nonce2}) // a new owner
}

// RFC 6887 §7.4, PROTOCOL.md §8 item 7: NETWORK_FAILURE (30 s) while the
// B4 holds no set; NAT-PMP says Network Failure (3).
func TestNetworkFailureUnprovisioned(t *testing.T) {
	f := newFixture(t, false, nil)
	code, lt := f.code(hostA, mapReq(t, hostA, mapOpts{proto: 6, iport: 80, lifetime: 600, nonce: nonce1}))
	if code != pcp.NetworkFailure || lt != 30 {
		t.Errorf("MAP unprovisioned: %v %d, want NETWORK_FAILURE 30", code, lt)
	}
	if code, _ := f.code(hostA, peerReq(t, hostA, 6, 80, 600, nonce1, netip.AddrPortFrom(remote, 80))); code != pcp.NetworkFailure {
		t.Errorf("PEER unprovisioned: %v", code)
	}
	if a := f.pmp(hostA, pmp(2, 80, 0, 600)); a.result != PMPNetworkFailure {
		t.Errorf("NAT-PMP map unprovisioned: %+v", a)
	}
	if a := f.pmp(hostA, []byte{0, 0}); a.result != PMPNetworkFailure || a.addr != netip.AddrFrom4([4]byte{}) {
		t.Errorf("NAT-PMP address unprovisioned: %+v", a)
	}
	// Provisioned, then lost again.
	f.provision(public, testSet)
	f.mapOK(hostA, mapOpts{proto: 6, iport: 80, lifetime: 600, nonce: nonce1})
	f.nat.Clear()
	f.srv.Deprovisioned()
	if code, _ := f.code(hostA, mapReq(t, hostA, mapOpts{proto: 6, iport: 80, lifetime: 600, nonce: nonce1})); code != pcp.NetworkFailure {
		t.Errorf("MAP after the set was lost: %v", code)
	}
}

// RFC 6887 §11.3, §17.2: USER_EX_QUOTA past the per-host quota,
// NO_RESOURCES when the set (minus 5350/5351) is full.
func TestQuotaAndNoResources(t *testing.T) {
	f := newFixture(t, true, func(c *Config) { c.MaxPerHost = 3 })
	for i := range 3 {
		f.mapOK(hostA, mapOpts{proto: 6, iport: uint16(1000 + i), lifetime: 600, nonce: nonce1})
	}
	if code, _ := f.code(hostA, mapReq(t, hostA, mapOpts{proto: 6, iport: 2000, lifetime: 600, nonce: nonce1})); code != pcp.UserExQuota {
		t.Errorf("fourth mapping: %v, want USER_EX_QUOTA", code)
	}
	if a := f.pmp(hostA, pmp(1, 2000, 0, 600)); a.result != PMPOutOfResources {
		t.Errorf("NAT-PMP past the quota: %+v", a)
	}
	f.mapOK(hostB, mapOpts{proto: 6, iport: 2000, lifetime: 600, nonce: nonce1})
	// A refresh is not a new mapping.
	f.mapOK(hostA, mapOpts{proto: 6, iport: 1000, lifetime: 600, nonce: nonce1})

	small := portset.Range{First: 5348, Size: 4} // two usable ports
	g := newFixture(t, false, nil)
	g.nat.SetExternal(public, small)
	g.srv.Provisioned(public, small)
	for i := range 3 {
		m := g.do(hostA, mapReq(t, hostA, mapOpts{proto: 17, iport: uint16(100 + i), lifetime: 600, nonce: nonce1}))
		if i < 2 && (m.Result != pcp.Success || m.Map.ExternalPort == 5350 || m.Map.ExternalPort == 5351) {
			t.Fatalf("mapping %d: %v port %d", i, m.Result, m.Map.ExternalPort)
		}
		if i == 2 && m.Result != pcp.NoResources {
			t.Fatalf("third mapping in a full set: %v", m.Result)
		}
	}
}

// RFC 6887 §13.2: PREFER_FAILURE gets the suggested port or
// CANNOT_PROVIDE_EXTERNAL; never 5350/5351 or a port outside the set.
func TestPreferFailure(t *testing.T) {
	f := newFixture(t, true, nil)
	pf := []pcp.Option{pcp.PreferFailureOption()}
	m := f.mapOK(hostA, mapOpts{proto: 6, iport: 80, lifetime: 600, nonce: nonce1, suggested: 5200, opts: pf})
	if m.Map.ExternalPort != 5200 {
		t.Fatalf("got %d, want the suggested 5200", m.Map.ExternalPort)
	}
	for _, p := range []uint16{5200, 5351, 80} {
		if code, _ := f.code(hostB, mapReq(t, hostB, mapOpts{proto: 6, iport: 80, lifetime: 600, nonce: nonce1, suggested: p, opts: pf})); code != pcp.CannotProvideExternal {
			t.Errorf("PREFER_FAILURE for %d: %v", p, code)
		}
	}
	// Without it, a taken suggestion gets another port.
	m = f.mapOK(hostB, mapOpts{proto: 6, iport: 80, lifetime: 600, nonce: nonce1, suggested: 5200})
	if m.Map.ExternalPort == 5200 {
		t.Fatal("two mappings on 5200")
	}
}

// RFC 6887 §13.3: FILTERs are enforced by the NAT, added across
// refreshes, cleared by prefix length 0, bounded (EXCESSIVE_REMOTE_PEERS).
func TestFilter(t *testing.T) {
	f := newFixture(t, true, func(c *Config) { c.MaxFilters = 2 })
	only := []pcp.Option{pcp.FilterOption(pcp.FilterFor(netip.PrefixFrom(remote, 32), 0))}
	m := f.mapOK(hostA, mapOpts{proto: 17, iport: 6000, lifetime: 600, nonce: nonce1, opts: only})
	if fs, _ := m.Filters(); len(fs) != 1 {
		t.Errorf("FILTER not echoed: %v", fs)
	}
	in := func(from netip.Addr) error {
		return f.nat.Inbound(packet.AppendUDP4(nil, 0, from.As4(), public.As4(), 9999, m.Map.ExternalPort, 64, []byte("x")))
	}
	if err := in(remote2); err != nat.ErrFiltered {
		t.Errorf("unlisted peer: %v, want filtered", err)
	}
	if err := in(remote); err != nil {
		t.Errorf("listed peer: %v", err)
	}
	two := []pcp.Option{pcp.FilterOption(pcp.FilterFor(netip.PrefixFrom(remote2, 32), 0)), pcp.FilterOption(pcp.FilterFor(netip.MustParsePrefix("198.51.100.0/24"), 0))}
	if code, _ := f.code(hostA, mapReq(t, hostA, mapOpts{proto: 17, iport: 6000, lifetime: 600, nonce: nonce1, opts: two})); code != pcp.ExcessiveRemotePeers {
		t.Errorf("three filters with a limit of two: %v", code)
	}
	clearAll := []pcp.Option{pcp.FilterOption(pcp.Filter{PrefixLen: 0, RemoteIP: netip.IPv6Unspecified()})}
	f.mapOK(hostA, mapOpts{proto: 17, iport: 6000, lifetime: 600, nonce: nonce1, opts: clearAll})
	if err := in(remote2); err != nil {
		t.Errorf("after prefix length 0: %v", err)
	}
}

// RFC 6887 §12.3: PEER creates the outbound mapping (or reports it), its
// nonce owns it, a bad remote peer is MALFORMED_REQUEST.
func TestPeer(t *testing.T) {
	f := newFixture(t, true, nil)
	m := f.do(hostA, peerReq(t, hostA, 17, 7000, 3600, nonce1, netip.AddrPortFrom(remote, 3478)))
	if m.Result != pcp.Success || m.Lifetime != 3600 || m.Peer == nil || m.Peer.RemoteIP != remote {
		t.Fatalf("PEER: %v lifetime %d peer %+v", m.Result, m.Lifetime, m.Peer)
	}
	f.checkAnswer(m)
	out := packet.AppendUDP4(nil, 0, hostA.As4(), remote.As4(), 7000, 3478, 64, []byte("x"))
	if _, err := f.nat.Outbound(out); err != nil {
		t.Fatal(err)
	}
	if sp := binary.BigEndian.Uint16(out[20:]); sp != m.Map.ExternalPort {
		t.Errorf("traffic left from %d, PEER said %d", sp, m.Map.ExternalPort)
	}
	if code, _ := f.code(hostA, peerReq(t, hostA, 17, 7000, 3600, nonce2, netip.AddrPortFrom(remote, 3478))); code != pcp.NotAuthorized {
		t.Errorf("PEER with another nonce: %v", code)
	}
	q := f.do(hostA, peerReq(t, hostA, 17, 7000, 0, nonce1, netip.AddrPortFrom(remote, 3478)))
	if q.Result != pcp.Success || q.Lifetime < 3500 || q.Map.ExternalPort != m.Map.ExternalPort {
		t.Errorf("PEER query: %v %d port %d", q.Result, q.Lifetime, q.Map.ExternalPort)
	}
	for _, bad := range []netip.Addr{netip.MustParseAddr("224.0.0.9"), netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("2001:db8::1")} {
		if code, _ := f.code(hostA, peerReq(t, hostA, 17, 7001, 60, nonce1, netip.AddrPortFrom(bad, 1))); code != pcp.MalformedRequest {
			t.Errorf("PEER to %v: %v", bad, code)
		}
	}
}

// RFC 6887 §11.3: all ports or all protocols cannot be met on a shared
// set (UNSUPP_PROTOCOL); other protocols are unsupported; deleting what
// never existed succeeds.
func TestUnsupportedMaps(t *testing.T) {
	f := newFixture(t, true, nil)
	for _, o := range []mapOpts{{proto: 0, iport: 0, lifetime: 60}, {proto: 6, iport: 0, lifetime: 60}, {proto: 132, iport: 5, lifetime: 60}} {
		if code, _ := f.code(hostA, mapReq(t, hostA, o)); code != pcp.UnsuppProtocol {
			t.Errorf("%+v: %v", o, code)
		}
	}
	if code, _ := f.code(hostA, mapReq(t, hostA, mapOpts{proto: 0, iport: 0, lifetime: 0})); code != pcp.Success {
		t.Errorf("DMZ delete: %v", code)
	}
}

// Static forwards: installed on provisioning (another port when the wanted
// one is outside the set), a MAP returns them with lifetime 2^32-1, a
// delete is NOT_AUTHORIZED, NAT-PMP cannot touch them.
func TestStaticForwards(t *testing.T) {
	f := newFixture(t, false, func(c *Config) {
		c.Static = []Forward{{Proto: 6, External: 5300, Internal: netip.AddrPortFrom(hostA, 80)}, {Proto: 17, External: 53, Internal: netip.AddrPortFrom(hostB, 53)}}
	})
	fw := f.provision(public, testSet)
	if len(fw) != 2 || fw[0].External != 5300 || fw[1].External == 53 || !testSet.Contains(fw[1].External) || fw[1].Err != nil {
		t.Fatalf("forwards %+v", fw)
	}
	m := f.mapOK(hostA, mapOpts{proto: 6, iport: 80, lifetime: 60, nonce: nonce1})
	if m.Lifetime != 0xffffffff || m.Map.ExternalPort != 5300 {
		t.Errorf("MAP of a static forward: lifetime %d port %d", m.Lifetime, m.Map.ExternalPort)
	}
	if code, _ := f.code(hostA, mapReq(t, hostA, mapOpts{proto: 6, iport: 80, nonce: nonce1})); code != pcp.NotAuthorized {
		t.Errorf("delete of a static forward: %v", code)
	}
	if a := f.pmp(hostA, pmp(2, 80, 0, 0)); a.result != PMPNotAuthorized {
		t.Errorf("NAT-PMP delete of a static forward: %+v", a)
	}
	// Re-installed after the set changes.
	f.nat.SetExternal(public, portset.Range{First: 8192, Size: 256})
	fw = f.srv.Provisioned(public, portset.Range{First: 8192, Size: 256})
	if fw[0].External < 8192 || fw[0].External >= 8192+256 {
		t.Fatalf("after a set change: %+v", fw)
	}
	if mi, ok := f.nat.Mapping(6, netip.AddrPortFrom(hostA, 80)); !ok || mi.External != fw[0].External {
		t.Fatalf("NAT after re-install: %+v %v", mi, ok)
	}
}

// RFC 6886: external address, UDP and TCP mappings, deletes (one, all),
// unsupported opcode, the Epoch; version negotiation (RFC 6887 §9).
func TestNATPMP(t *testing.T) {
	f := newFixture(t, true, nil)
	f.clk.Advance(5 * time.Second)
	a := f.pmp(hostA, []byte{0, 0})
	if a.op != 128 || a.result != 0 || a.addr != public || a.epoch != 5 || len(a.raw) != 12 {
		t.Fatalf("address: %+v", a)
	}
	u := f.pmp(hostA, pmp(1, 4500, 5201, 3600))
	if u.op != 129 || u.result != 0 || u.iport != 4500 || u.ext != 5201 || u.lifetime != 3600 {
		t.Fatalf("UDP map: %+v", u)
	}
	tc := f.pmp(hostA, pmp(2, 4500, 0, 7200))
	if tc.op != 130 || tc.result != 0 || !testSet.Contains(tc.ext) || tc.ext == 5350 || tc.ext == 5351 {
		t.Fatalf("TCP map: %+v", tc)
	}
	f.pmp(hostA, pmp(1, 4501, 0, 3600))
	if mi, ok := f.nat.Mapping(17, netip.AddrPortFrom(hostA, 4500)); !ok || !mi.Explicit || mi.External != 5201 {
		t.Fatalf("NAT: %+v %v", mi, ok)
	}
	// A PCP nonce cannot be stolen through NAT-PMP.
	f.mapOK(hostA, mapOpts{proto: 17, iport: 4600, lifetime: 600, nonce: nonce1})
	if x := f.pmp(hostA, pmp(1, 4600, 0, 0)); x.result != PMPNotAuthorized {
		t.Errorf("NAT-PMP delete of a PCP mapping: %+v", x)
	}
	if d := f.pmp(hostA, pmp(1, 4500, 0, 0)); d.result != 0 || d.ext != 0 || d.lifetime != 0 {
		t.Errorf("delete: %+v", d)
	}
	if _, ok := f.nat.Mapping(17, netip.AddrPortFrom(hostA, 4500)); ok {
		t.Error("deleted mapping still there")
	}
	if d := f.pmp(hostA, pmp(1, 0, 0, 0)); d.result != 0 {
		t.Errorf("delete all UDP: %+v", d)
	}
	if _, ok := f.nat.Mapping(17, netip.AddrPortFrom(hostA, 4501)); ok {
		t.Error("delete-all left a UDP mapping")
	}
	if _, ok := f.nat.Mapping(17, netip.AddrPortFrom(hostA, 4600)); !ok {
		t.Error("delete-all removed the PCP mapping")
	}
	if _, ok := f.nat.Mapping(6, netip.AddrPortFrom(hostA, 4500)); !ok {
		t.Error("delete-all UDP removed the TCP mapping")
	}
	// §3.5: the request returned, top bit of the opcode set, result 5.
	if x := f.srv.Handle([]byte{0, 9, 1, 2, 7, 7}, netip.AddrPortFrom(hostA, 1)); string(x) != string([]byte{0, 128 + 9, 0, 5, 7, 7}) {
		t.Errorf("unsupported opcode: %x", x)
	}
	if out := f.srv.Handle([]byte{0, 129, 0, 0}, netip.AddrPortFrom(hostA, 1)); out != nil {
		t.Errorf("a NAT-PMP response was answered: %x", out)
	}
	if out := f.srv.Handle(pmp(1, 1, 0, 60)[:8], netip.AddrPortFrom(hostA, 1)); out != nil {
		t.Errorf("a short mapping request was answered: %x", out)
	}
	for _, v := range []byte{1, 3} {
		req := mapReq(t, hostA, mapOpts{proto: 6, iport: 1, lifetime: 60})
		req[0] = v
		if m := f.do(hostA, req); m.Result != pcp.UnsuppVersion || m.Version != 2 {
			t.Errorf("version %d: %v version %d", v, m.Result, m.Version)
		}
	}
}

// The per-host rate limit drops (and counts) a burst.
func TestRateLimit(t *testing.T) {
	f := newFixture(t, true, func(c *Config) { c.Rate, c.Burst = 1, 3 })
	answered := 0
	for range 10 {
		if f.srv.Handle([]byte{0, 0}, netip.AddrPortFrom(hostA, 1)) != nil {
			answered++
		}
	}
	if answered != 3 || f.srv.Stats().DropRate != 7 {
		t.Fatalf("answered %d, dropped %d; want 3 and 7", answered, f.srv.Stats().DropRate)
	}
	if f.srv.Handle([]byte{0, 0}, netip.AddrPortFrom(hostB, 1)) == nil {
		t.Fatal("another host was limited too")
	}
	f.clk.Advance(2 * time.Second)
	if f.srv.Handle([]byte{0, 0}, netip.AddrPortFrom(hostA, 1)) == nil {
		t.Fatal("no token after 2 s")
	}
}

// RFC 6887 §8.5, §14.1.3; RFC 6886 §3.2.1: a new set drops the mappings
// the NAT lost, resets the Epoch and announces: ANNOUNCE and the NAT-PMP
// address, first gap ≥ 250 ms.
func TestAnnounceOnSetChange(t *testing.T) {
	f := newFixture(t, true, nil)
	f.mapOK(hostA, mapOpts{proto: 6, iport: 80, lifetime: 600, nonce: nonce1})
	got := make(chan []byte, 64)
	cancel := f.srv.Subscribe(func(p []byte) { got <- p })
	defer cancel()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go f.srv.Run(ctx)
	// The start-up schedule.
	next := func() []byte {
		select {
		case p := <-got:
			return p
		case <-time.After(10 * time.Second):
			t.Fatal("no announcement")
			return nil
		}
	}
	for range 2 {
		next()
	}
	f.clk.Advance(100 * time.Second)
	if f.srv.Epoch() != 100 {
		t.Fatalf("Epoch %d", f.srv.Epoch())
	}
	newSet := portset.Range{First: 9216, Size: 256}
	f.nat.SetExternal(public, newSet)
	f.srv.Provisioned(public, newSet)
	if f.srv.Epoch() != 0 {
		t.Fatalf("Epoch %d after the set changed, want 0", f.srv.Epoch())
	}
	if len(f.srv.Mappings()) != 0 || f.srv.Stats().Mappings != 0 {
		t.Fatalf("mappings survived the set change: %v", f.srv.Mappings())
	}
	// Drain the old schedule's copies until a fresh pair (Epoch 0) comes.
	deadline := time.Now().Add(20 * time.Second)
	var sawPCP, sawPMP bool
	for !(sawPCP && sawPMP) && time.Now().Before(deadline) {
		p := next()
		switch {
		case len(p) == 24 && p[0] == 2 && p[1] == 0x80 && binary.BigEndian.Uint32(p[8:]) == 0:
			sawPCP = true
		case len(p) == 12 && p[0] == 0 && p[1] == 128 && netip.AddrFrom4([4]byte(p[8:])) == public && binary.BigEndian.Uint32(p[4:]) == 0:
			sawPMP = true
		}
	}
	if !sawPCP || !sawPMP {
		t.Fatalf("announcements after the change: PCP %v NAT-PMP %v", sawPCP, sawPMP)
	}
	// A client re-mapping gets a port of the new set.
	m := f.do(hostA, mapReq(t, hostA, mapOpts{proto: 6, iport: 80, lifetime: 600, nonce: nonce1}))
	if m.Result != pcp.Success || !newSet.Contains(m.Map.ExternalPort) {
		t.Fatalf("re-map: %v %d", m.Result, m.Map.ExternalPort)
	}
}

func TestAnnounceGaps(t *testing.T) {
	f := newFixture(t, true, nil)
	var times []time.Time
	got := make(chan struct{}, 64)
	f.srv.Subscribe(func(p []byte) {
		if p[0] == 2 {
			times = append(times, time.Now())
			got <- struct{}{}
		}
	})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go f.srv.Run(ctx)
	for range 3 {
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("no announcement")
		}
	}
	stop()
	// RFC 6887 §14.1.3: at least 250 ms, then at least double.
	if g1, g2 := times[1].Sub(times[0]), times[2].Sub(times[1]); g1 < 250*time.Millisecond || g2 < 2*250*time.Millisecond {
		t.Fatalf("gaps %v %v", g1, g2)
	}
}
