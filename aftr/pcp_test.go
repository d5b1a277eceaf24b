package aftr

import (
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/stack/pcp"
	"github.com/lw4o6/lw4o6/stack/portset"
)

// PROTOCOL.md §8 items 1-3, RFC 7753 §4 and §4.2, RFC 6887 §11.3: the B4's
// request (protocol 0, port 0, PORT_SET 65535 first 0) from 192.0.0.2 in
// its softwire gets SUCCESS with an aligned block of PortsPerB4 ports clear
// of 0-1023, internal = external, and the binding is installed.
func TestPCPMapPortSet(t *testing.T) {
	r := newRig(t, nil)
	q := b4Req(1, 3600)
	m := r.pcp(tB4A, q)
	ip, first, size := granted(t, m)

	if !tPool.Contains(ip) {
		t.Errorf("assigned %v, not in the pool %v", ip, tPool)
	}
	if int(size) != r.cfg.PortsPerB4 {
		t.Errorf("PORT_SET size %d, want PortsPerB4 %d", size, r.cfg.PortsPerB4)
	}
	if first < 1024 || int(first)%r.cfg.PortsPerB4 != 0 {
		t.Errorf("first port %d: want ≥ 1024 and a multiple of %d (RFC 7596 §5.1)", first, r.cfg.PortsPerB4)
	}
	if m.Lifetime != 3600 {
		t.Errorf("lifetime %d, want 3600", m.Lifetime)
	}
	// RFC 6887 §11.3: nonce, protocol and internal port copied.
	if m.Map.Nonce != q.nonce || m.Map.Protocol != 0 || m.Map.InternalPort != 0 {
		t.Errorf("MAP data not copied: %+v", m.Map)
	}
	if m.Epoch != r.a.Epoch() {
		t.Errorf("epoch %d, want %d", m.Epoch, r.a.Epoch())
	}

	b, ok := r.binding(tB4A)
	if !ok {
		t.Fatalf("no binding for %v in %v", tB4A, r.a.Bindings())
	}
	if b.ip != ip || b.first != first || b.size != uint32(size) || !b.contiguous || b.br != tAFTR {
		t.Errorf("binding %v %d+%d contiguous %v br %v, want %v %d+%d contiguous br %v",
			b.ip, b.first, b.size, b.contiguous, b.br, ip, first, size, tAFTR)
	}
	if want := r.clock.Now().Add(3600 * time.Second); !b.expires.Equal(want) {
		t.Errorf("binding expires %v, want %v", b.expires, want)
	}
	if n := len(r.a.Bindings()); n != 1 {
		t.Errorf("%d bindings, want 1", n)
	}
	if r.counter("in-pcp") != 1 || r.counter("out-pcp") != 1 {
		t.Errorf("PCP counters %v", r.a.Counters())
	}
}

// PROTOCOL.md §8 item 1 and §2.3: the RFC 7753 §5.2 form (protocol 0,
// internal port 1, PORT_SET first internal port 1) is accepted too; the
// internal port is echoed unchanged, the PORT_SET first port is the set's.
func TestPCPMapRFC7753Form(t *testing.T) {
	r := newRig(t, nil)
	q := b4Req(1, 3600)
	q.internalPort = 1
	q.portSet = &pcp.PortSet{Size: 65535, FirstInternalPort: 1}
	m := r.pcp(tB4A, q)
	ip, first, size := granted(t, m)
	if m.Map.InternalPort != 1 {
		t.Errorf("internal port %d, want 1 copied (RFC 6887 §11.3)", m.Map.InternalPort)
	}
	if !tPool.Contains(ip) || first < 1024 || int(size) != r.cfg.PortsPerB4 {
		t.Errorf("granted %v %d+%d", ip, first, size)
	}
	if _, ok := r.binding(tB4A); !ok {
		t.Errorf("no binding")
	}
}

// RFC 7753 §4: the server maps at most what was asked, the largest
// power-of-two block that fits (PROTOCOL.md §8 item 2).
func TestPCPSmallerSetAsked(t *testing.T) {
	r := newRig(t, nil)
	q := b4Req(1, 3600)
	q.portSet.Size = 1000
	_, first, size := granted(t, r.pcp(tB4A, q))
	if size != 512 || first%512 != 0 || first < 1024 {
		t.Errorf("granted %d+%d for 1000 asked, want an aligned 512", first, size)
	}
}

// RFC 6887 §11.3 and §15, RFC 7753 §4.4: a renewal with the same nonce gets
// the same address and set, whatever it suggests, and a new lifetime.
func TestPCPRenewSameNonce(t *testing.T) {
	r := newRig(t, nil)
	ip, first, size := r.bind(tB4A, 1)
	r.clock.Advance(1000 * time.Second)

	q := b4Req(1, 7200)
	q.suggestIP, q.suggestPort = ip, first // PROTOCOL.md §8 item 1 renewal
	ip2, first2, size2 := granted(t, r.pcp(tB4A, q))
	if ip2 != ip || first2 != first || size2 != size {
		t.Errorf("renewal gave %v %d+%d, want %v %d+%d", ip2, first2, size2, ip, first, size)
	}
	b, _ := r.binding(tB4A)
	if want := r.clock.Now().Add(7200 * time.Second); !b.expires.Equal(want) {
		t.Errorf("expires %v, want %v", b.expires, want)
	}

	// A suggestion of another address or port changes nothing either.
	q.suggestIP, q.suggestPort = tPool.Addr().Next().Next(), 60000
	ip3, first3, _ := granted(t, r.pcp(tB4A, q))
	if ip3 != ip || first3 != first {
		t.Errorf("renewal with another suggestion gave %v %d, want %v %d", ip3, first3, ip, first)
	}
	if n := len(r.a.Bindings()); n != 1 {
		t.Errorf("%d bindings after renewals, want 1", n)
	}
}

// RFC 6887 §11.3 (Simple Threat Model): a request with another nonce for an
// existing mapping gets NOT_AUTHORIZED with lifetime = the mapping's
// remaining life, and changes nothing, delete included.
func TestPCPOtherNonceNotAuthorized(t *testing.T) {
	r := newRig(t, nil)
	r.bind(tB4A, 1)
	before, _ := r.binding(tB4A)
	r.clock.Advance(600 * time.Second)

	m := r.pcp(tB4A, b4Req(99, 3600))
	if m.Result != pcp.NotAuthorized || m.Lifetime != 3000 {
		t.Errorf("other nonce: %v lifetime %d, want NOT_AUTHORIZED lifetime 3000", m.Result, m.Lifetime)
	}
	m = r.pcp(tB4A, b4Req(99, 0))
	if m.Result != pcp.NotAuthorized || m.Lifetime != 3000 {
		t.Errorf("delete with other nonce: %v lifetime %d, want NOT_AUTHORIZED lifetime 3000", m.Result, m.Lifetime)
	}
	if after, ok := r.binding(tB4A); !ok || after != before {
		t.Errorf("binding changed: %+v, was %+v", after, before)
	}
}

// RFC 6887 §11.3: the NOT_AUTHORIZED lifetime is the remaining life even in
// the binding's last second, not the 30-minute default of an error whose
// lifetime is 0 (§7.4), which would hold the B4 off long after the binding
// ended.
func TestPCPOtherNonceLastSecond(t *testing.T) {
	r := newRig(t, nil)
	r.bind(tB4A, 1)
	r.clock.Advance(3600*time.Second - 500*time.Millisecond)
	m := r.pcp(tB4A, b4Req(99, 3600))
	if m.Result != pcp.NotAuthorized || m.Lifetime > 1 {
		t.Errorf("other nonce 0.5 s before expiry: %v lifetime %d, want NOT_AUTHORIZED lifetime ≤ 1", m.Result, m.Lifetime)
	}
}

// RFC 6887 §15.1, RFC 7753 §4.4: lifetime 0 with the same nonce (and the
// PORT_SET) deletes the whole set: SUCCESS, lifetime 0, the binding gone,
// the data plane closed. A retransmitted delete gets SUCCESS again.
// RFC 6887 §15: the same B4 may reclaim its set during the hold-down,
// another B4 may not have it.
func TestPCPDelete(t *testing.T) {
	r := newRig(t, nil)
	ip, first, _ := r.bind(tB4A, 1)

	for i := range 2 {
		m := r.pcp(tB4A, b4Req(1, 0))
		if m.Result != pcp.Success || m.Lifetime != 0 {
			t.Errorf("delete %d: %v lifetime %d, want SUCCESS 0", i, m.Result, m.Lifetime)
		}
		// §15.1: a delete's suggested address and port are copied back.
		if m.Map.ExternalPort != 0 || m.Map.ExternalIP != netip.IPv4Unspecified() {
			t.Errorf("delete %d: response external %v:%d, want the request's 0.0.0.0:0", i, m.Map.ExternalIP, m.Map.ExternalPort)
		}
	}
	if _, ok := r.binding(tB4A); ok {
		t.Fatalf("binding still there after delete: %v", r.a.Bindings())
	}
	r.a.FromAccess(encap(tB4A, tAFTR, udp4(ip, tRemote, first, 53, 64, []byte("q"))))
	if len(r.internet.take()) != 0 || r.counter("drop-no-source-softwire-ipv6") != 1 {
		t.Errorf("packet of a deleted binding not dropped: %v", r.a.Counters())
	}
	r.access.take()

	_, firstB, _ := r.bind(tB4B, 2)
	if firstB == first {
		t.Errorf("another B4 got the set in hold-down")
	}
	ip2, first2, _ := r.bind(tB4A, 3) // a new nonce: there is no mapping now
	if ip2 != ip || first2 != first {
		t.Errorf("B4 did not get its own set back in hold-down: %v %d, had %v %d", ip2, first2, ip, first)
	}
}

// PROTOCOL.md §1.8: deleting a static mapping is NOT_AUTHORIZED; a request
// for it is answered with it and lifetime 2^32-1 (RFC 6887 §11.3).
func TestPCPStaticBinding(t *testing.T) {
	r := newRig(t, nil)
	ip := netip.MustParseAddr("192.0.2.200")
	err := r.a.table.AddStatic(bindings.Binding{B4: tB4A, IPv4: ip, PSID: portset.PSID{Length: 4, ID: 3}, BR: tAFTR, Static: true})
	if err != nil {
		t.Fatal(err)
	}
	m := r.pcp(tB4A, b4Req(1, 3600))
	gotIP, first, size := granted(t, m)
	if gotIP != ip || first != 3*4096 || size != 4096 || m.Lifetime != math.MaxUint32 {
		t.Errorf("static: %v %d+%d lifetime %d, want %v 12288+4096 lifetime 2^32-1", gotIP, first, size, m.Lifetime, ip)
	}
	if m := r.pcp(tB4A, b4Req(1, 0)); m.Result != pcp.NotAuthorized {
		t.Errorf("deleting a static binding: %v, want NOT_AUTHORIZED", m.Result)
	}
	if _, ok := r.binding(tB4A); !ok {
		t.Errorf("static binding gone")
	}
}

// PROTOCOL.md §8 items 1-2 and §1.8: without PORT_SET the lwAFTR, which
// binds only sets, cannot meet a DMZ request (UNSUPP_PROTOCOL, RFC 6887
// §11.3) and refuses single-port mappings (NOT_AUTHORIZED); protocol 0 with
// a port stays MALFORMED_REQUEST. A PORT_SET of size 1 is a plain MAP
// (RFC 7753 §4.2). Nothing is bound.
func TestPCPMapWithoutPortSet(t *testing.T) {
	for _, c := range []struct {
		name   string
		edit   func(*mapReq)
		result pcp.ResultCode
	}{
		{"dmz", func(q *mapReq) { q.portSet = nil }, pcp.UnsuppProtocol},
		{"tcp80", func(q *mapReq) { q.portSet, q.protocol, q.internalPort = nil, 6, 80 }, pcp.NotAuthorized},
		{"tcp-all", func(q *mapReq) { q.portSet, q.protocol = nil, 6 }, pcp.NotAuthorized},
		{"proto0-port1", func(q *mapReq) { q.portSet, q.internalPort = nil, 1 }, pcp.MalformedRequest},
		{"portset-size1", func(q *mapReq) { q.portSet.Size = 1 }, pcp.UnsuppProtocol},
		{"portset-size0", func(q *mapReq) { q.portSet.Size = 0 }, pcp.MalformedOption},
		{"portset-past-65535", func(q *mapReq) {
			q.internalPort = 2
			q.portSet = &pcp.PortSet{Size: 65535, FirstInternalPort: 2}
		}, pcp.MalformedOption},
		{"filter", func(q *mapReq) {
			q.opts = []pcp.Option{pcp.FilterOption(pcp.FilterFor(netip.MustParsePrefix("203.0.113.0/24"), 0))}
		}, pcp.ExcessiveRemotePeers},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, nil)
			q := b4Req(1, 3600)
			c.edit(&q)
			m := r.pcp(tB4A, q)
			if m.Result != c.result {
				t.Errorf("result %v, want %v", m.Result, c.result)
			}
			if n := len(r.a.Bindings()); n != 0 {
				t.Errorf("%d bindings after a refused request", n)
			}
		})
	}
}

// RFC 6887 §7.4 and §11.3: when no block is free the answer is
// NO_RESOURCES, a short-lifetime error (30 s).
func TestPCPPoolExhausted(t *testing.T) {
	r := newRig(t, func(c *Config) {
		c.Pools = []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}
		c.PortsPerB4 = 32768 // one usable block: 0-32767 holds the system ports
	})
	ip, first, size := r.bind(tB4A, 1)
	if ip != netip.MustParseAddr("192.0.2.1") || first != 32768 || size != 32768 {
		t.Fatalf("first B4 got %v %d+%d", ip, first, size)
	}
	m := r.pcp(tB4B, b4Req(2, 3600))
	if m.Result != pcp.NoResources || m.Lifetime != pcp.ShortErrorLifetime {
		t.Errorf("second B4: %v lifetime %d, want NO_RESOURCES 30", m.Result, m.Lifetime)
	}
	if _, ok := r.binding(tB4B); ok {
		t.Errorf("second B4 bound")
	}
}

// PROTOCOL.md §8 item 2: B4s get disjoint sets, packed into the first
// addresses (bindings.Pool), spilling to the next address when one is full.
func TestPCPDisjointSets(t *testing.T) {
	r := newRig(t, func(c *Config) {
		c.Pools = []netip.Prefix{netip.MustParsePrefix("192.0.2.8/30")}
		c.PortsPerB4 = 16384 // three usable blocks per address
	})
	type set struct {
		ip          netip.Addr
		first, last int
	}
	var sets []set
	for i := range 8 {
		b4 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x10, 15: byte(i + 1)})
		ip, first, size := r.bind(b4, byte(i))
		s := set{ip, int(first), int(first) + int(size) - 1}
		for _, o := range sets {
			if o.ip == s.ip && s.first <= o.last && o.first <= s.last {
				t.Errorf("B4 %d got %+v, overlapping %+v", i, s, o)
			}
		}
		sets = append(sets, s)
	}
	if n := len(r.a.Bindings()); n != 8 {
		t.Errorf("%d bindings, want 8", n)
	}
}

// PROTOCOL.md §8 item 2: one set per B4 IPv6 address. More requests from
// the same B4 (same nonce, any form) renew its one set; another nonce is
// refused (RFC 6887 §11.3).
func TestPCPOneSetPerB4(t *testing.T) {
	r := newRig(t, nil)
	ip, first, _ := r.bind(tB4A, 1)

	q := b4Req(1, 3600)
	q.internalPort = 1
	q.portSet = &pcp.PortSet{Size: 65535, FirstInternalPort: 1}
	ip2, first2, _ := granted(t, r.pcp(tB4A, q))
	if ip2 != ip || first2 != first {
		t.Errorf("second request got %v %d, want the same set %v %d", ip2, first2, ip, first)
	}
	if m := r.pcp(tB4A, b4Req(7, 3600)); m.Result != pcp.NotAuthorized {
		t.Errorf("another nonce: %v, want NOT_AUTHORIZED", m.Result)
	}
	if n := len(r.a.Bindings()); n != 1 {
		t.Errorf("%d bindings, want 1", n)
	}
}

// RFC 6887 §15: granted lifetimes are clamped to [LifetimeMin, LifetimeMax].
func TestPCPLifetimeClamped(t *testing.T) {
	r := newRig(t, nil)
	m := r.pcp(tB4A, b4Req(1, 10))
	if m.Result != pcp.Success || m.Lifetime != 120 {
		t.Errorf("10 s asked: %v %d, want 120", m.Result, m.Lifetime)
	}
	m = r.pcp(tB4A, b4Req(1, 1e7))
	if m.Result != pcp.Success || m.Lifetime != 86400 {
		t.Errorf("1e7 s asked: %v %d, want 86400", m.Result, m.Lifetime)
	}
}

// RFC 6887 §8.2: a message too short to answer is dropped silently
// (counted); UDP to 192.0.0.1 on another port is no PCP (PROTOCOL.md §8
// item 3: nothing else is accepted); a bad UDP checksum is dropped.
func TestPCPDropped(t *testing.T) {
	r := newRig(t, nil)
	r.a.FromAccess(pcpPacket(tB4A, []byte{2, 1, 0, 0}))
	r.quiet()
	if r.counter("drop-malformed-pcp") != 1 {
		t.Errorf("short PCP not counted: %v", r.a.Counters())
	}

	r.a.FromAccess(encap(tB4A, tAFTR, udp4(tB4In4, tAFTR4, tClientPort, 53, 64, b4Req(1, 3600).marshal(t))))
	r.quiet()
	if r.counter("drop-to-self-ipv4") != 1 {
		t.Errorf("UDP to 192.0.0.1:53 not counted: %v", r.a.Counters())
	}

	p := pcpPacket(tB4A, b4Req(1, 3600).marshal(t))
	p[40+20+6] ^= 0x55 // UDP checksum
	r.a.FromAccess(p)
	r.quiet()
	if r.counter("drop-to-self-ipv4") != 2 || len(r.a.Bindings()) != 0 {
		t.Errorf("bad checksum PCP not dropped: %v", r.a.Counters())
	}
}

// RFC 6887 §11.3 (per-subscriber quotas RECOMMENDED): B4 addresses of one
// subscriber prefix get at most QuotaPerPrefix bindings; past it the answer
// is USER_EX_QUOTA, a short-lifetime error, and another subscriber is
// still served.
func TestPCPQuotaPerPrefix(t *testing.T) {
	r := newRig(t, func(c *Config) {
		c.Pools = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/28")}
		c.PortsPerB4 = 4096
		c.QuotaPerPrefix, c.QuotaPrefixLen = 2, 56
	})
	sub := func(s, h byte) netip.Addr { return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, s, 15: h}) }
	r.bind(sub(1, 1), 1)
	r.bind(sub(1, 2), 2)
	m := r.pcp(sub(1, 3), b4Req(3, 3600))
	if m.Result != pcp.UserExQuota || m.Lifetime != pcp.ShortErrorLifetime {
		t.Errorf("third B4 of one /56: %v lifetime %d, want USER_EX_QUOTA 30", m.Result, m.Lifetime)
	}
	if _, ok := r.binding(sub(1, 3)); ok {
		t.Error("third B4 of one /56 bound")
	}
	r.bind(sub(2, 1), 4) // another subscriber
}
