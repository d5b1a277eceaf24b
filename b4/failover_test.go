package b4

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
	"github.com/lw4o6/lw4o6/stack/portset"
)

var (
	testGroup   = netip.MustParseAddr("ff02::1")
	aftrPCP4    = netip.AddrPortFrom(netip.AddrFrom4(addrAFTR4), pcp.ServerPort)
	allHostsPCP = netip.AddrPortFrom(netip.AddrFrom4(allHosts4), pcp.ClientPort)
)

// announceTo builds a softwire packet carrying payload from inner src to
// inner dst, outer from osrc to odst.
func announceTo(osrc, odst netip.Addr, src, dst netip.AddrPort, payload []byte) []byte {
	return softwire(osrc, odst, 0, udp4(src, dst, 0, 64, payload))
}

// TestFailoverTimers runs the failover tests that wait for real timers,
// concurrently as TestTimers does.
func TestFailoverTimers(t *testing.T) {
	tests := []struct {
		name string
		f    func(*testing.T)
	}{
		{"multicast ANNOUNCE", testAnnounceMulticast},
		{"unicast ANNOUNCE to 224.0.0.1", testAnnounceUnicastAllHosts},
		{"spoofed ANNOUNCEs change nothing", testAnnounceSpoofed},
		{"echoing server refused", testEchoingServerRefused},
	}
	var wg sync.WaitGroup
	for _, tc := range tests {
		wg.Go(func() { t.Run(tc.name, tc.f) })
	}
	wg.Wait()
}

// provisionedAt1000 is a B4 provisioned by an AFTR that has been up
// 1000 s, which then loses its state (Epoch reset).
func provisionedAt1000(t *testing.T, mod func(*Config)) (*env, pcpSeen) {
	e := newEnv(t, newHandler(3600), mod)
	e.aftr.epochOff.Store(int64(1000 * time.Second))
	r1, _ := e.provisioned()
	e.aftr.srv.ResetEpoch()
	return e, r1
}

// wantRenewalAfterAnnounce checks RFC 6887 §14.1.3: a request within
// 0-5 s of the ANNOUNCE, suggesting the held address and set, same nonce,
// and the set in use throughout.
func wantRenewalAfterAnnounce(t *testing.T, e *env, r1 pcpSeen, sent time.Time) {
	t.Helper()
	r2 := e.nextReq(7 * time.Second)
	// Slack beyond the 5 s for a loaded machine's timers.
	if gap := r2.at.Sub(sent); gap > 6500*time.Millisecond {
		t.Errorf("renewal %v after the ANNOUNCE, want within 5 s", gap)
	}
	checkMapRequest(t, r2, e.b.cfg, heldIP, testFirst)
	if r2.msg.Map.Nonce != r1.msg.Map.Nonce {
		t.Error("renewal with another nonce")
	}
	// Any Epoch far below the 1000 s it was: the restarted server's.
	s := waitStatus(t, e.b, 2*time.Second, "renewed", func(s Status) bool { return s.Epoch < 100 })
	if !s.Provisioned || s.Provisionings != 1 || s.Counters["in-pcp-announce-packets"] != 1 {
		t.Errorf("status %+v, want provisioned once, one ANNOUNCE", s)
	}
}

// RFC 6887 §14.1.3, issue 7 item 2: the AFTR's restart ANNOUNCE to the
// configured access multicast group, 192.0.0.1:5351 -> 224.0.0.1:5350 in a
// softwire packet, makes the B4 renew with its held address and set.
func testAnnounceMulticast(t *testing.T) {
	e, r1 := provisionedAt1000(t, func(c *Config) { c.AnnounceGroup = testGroup })
	sent := time.Now()
	e.b.FromAccess(announceTo(testAFTR, testGroup, aftrPCP4, allHostsPCP, e.aftr.srv.Announce()))
	wantRenewalAfterAnnounce(t, e, r1, sent)
}

// The same ANNOUNCE unicast to the B4's own address.
func testAnnounceUnicastAllHosts(t *testing.T) {
	e, r1 := provisionedAt1000(t, nil)
	sent := time.Now()
	e.b.FromAccess(announceTo(testAFTR, testB4, aftrPCP4, allHostsPCP, e.aftr.srv.Announce()))
	wantRenewalAfterAnnounce(t, e, r1, sent)
}

// Issue 7: a spoofed ANNOUNCE (wrong outer source, to the group or
// unicast; to a group the B4 was not given; wrong inner source or port; not
// an ANNOUNCE) changes nothing and is counted; it does not even update the
// Epoch record, so the genuine one that follows still shows the state loss.
func testAnnounceSpoofed(t *testing.T) {
	e, r1 := provisionedAt1000(t, func(c *Config) { c.AnnounceGroup = testGroup })
	ann := e.aftr.srv.Announce()
	mapResp, _ := pcp.Marshal(&pcp.Message{Response: true, Opcode: pcp.OpMap, Epoch: 0,
		Map: &pcp.MapData{Nonce: r1.msg.Map.Nonce, ExternalIP: netip.MustParseAddr("::ffff:198.51.100.66"), ExternalPort: 1024}})
	other4 := netip.AddrPortFrom(netip.MustParseAddr("192.0.0.3"), pcp.ServerPort)
	for _, c := range []struct {
		name    string
		pkt     []byte
		counter string
	}{
		{"group, wrong outer source", announceTo(testSpoof, testGroup, aftrPCP4, allHostsPCP, ann), "drop-pcp-announce-spoofed"},
		{"unicast, wrong outer source", announceTo(testSpoof, testB4, aftrPCP4, allHostsPCP, ann), "drop-pcp-announce-spoofed"},
		{"another B4's address", announceTo(testAFTR, testOther6, aftrPCP4, allHostsPCP, ann), "drop-wrong-dst-ipv6"},
		{"group not configured", announceTo(testAFTR, netip.MustParseAddr("ff02::2"), aftrPCP4, allHostsPCP, ann), "drop-wrong-dst-ipv6"},
		{"inner source not 192.0.0.1", announceTo(testAFTR, testGroup, other4, allHostsPCP, ann), "drop-pcp-announce-spoofed"},
		{"inner source port not 5351", announceTo(testAFTR, testB4, netip.AddrPortFrom(aftrPCP4.Addr(), 9), allHostsPCP, ann), "drop-pcp-announce-spoofed"},
		{"a MAP answer, not an ANNOUNCE", announceTo(testAFTR, testGroup, aftrPCP4, allHostsPCP, mapResp), "drop-pcp-announce-spoofed"},
		{"group, not PCP", announceTo(testAFTR, testGroup, aftrPCP4, netip.AddrPortFrom(testPublic, testFirst), []byte("x")), "drop-wrong-dst-ipv6"},
	} {
		before := pkts(e.b, c.counter)
		e.b.FromAccess(c.pkt)
		if got := pkts(e.b, c.counter); got != before+1 {
			t.Errorf("%s: %s %d -> %d, want counted", c.name, c.counter, before, got)
		}
	}
	e.noReq(5500 * time.Millisecond)
	if s := e.b.Status(); !s.Provisioned || s.Epoch < 1000 || s.Counters["in-pcp-announce-packets"] != 0 {
		t.Fatalf("status after spoofed ANNOUNCEs: %+v", s)
	}
	sent := time.Now()
	e.b.FromAccess(announceTo(testAFTR, testGroup, aftrPCP4, allHostsPCP, e.aftr.srv.Announce()))
	wantRenewalAfterAnnounce(t, e, r1, sent)
}

// Issue 7 item 3: a server that answers with the request's own PORT_SET
// (Size 65535, First Internal Port 0) and suggestion (0.0.0.0, port 0) is
// refused with a warning, counted, and asked again after a back-off; once
// it answers properly, the B4 is provisioned.
func testEchoingServerRefused(t *testing.T) {
	h := newHandler(3600)
	h.echo = true
	e := newEnv(t, h, nil)
	e.run()
	r1 := e.nextReq(2 * time.Second)
	waitFor(t, 2*time.Second, "the grant refused", func() bool { return pkts(e.b, "pcp-grant-refused") == 1 })
	if s := e.b.Status(); s.Provisioned {
		t.Fatalf("provisioned from an echoing server: %+v", s)
	}
	if _, _, ok := e.b.nat.External(); ok {
		t.Fatal("the NAT holds the echoed set")
	}
	h.set(func(h *handler) { h.echo = false })
	r2 := e.nextReq(5 * time.Second)
	if gap := r2.at.Sub(r1.at); gap < 900*time.Millisecond {
		t.Errorf("asked again %v after a refused grant, want a back-off", gap)
	}
	s := waitStatus(t, e.b, 2*time.Second, "provisioned", func(s Status) bool { return s.Provisioned })
	if s.Ports != testSet || s.Counters["pcp-grant-refused-packets"] != 1 {
		t.Errorf("status %+v", s)
	}
}

// Issue 7 item 3, PROTOCOL.md §8 items 1-2, RFC 7753 §4.2: what a grant
// must be before the B4 uses it.
func TestValidateGrant(t *testing.T) {
	grant := func(ip string, first uint16, ps *pcp.PortSet, lifetime time.Duration) *pcp.Mapping {
		m := &pcp.Message{Response: true, Opcode: pcp.OpMap, Lifetime: uint32(lifetime / time.Second),
			Map: &pcp.MapData{ExternalIP: netip.MustParseAddr(ip), ExternalPort: first}}
		if ps != nil {
			m.Options = append(m.Options, pcp.PortSetOption(*ps))
		}
		b, err := pcp.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if m, err = pcp.Parse(b); err != nil {
			t.Fatal(err)
		}
		return &pcp.Mapping{ExternalIP: m.Map.ExternalIP.Unmap(), ExternalPort: first, Lifetime: lifetime, Response: m}
	}
	ps := func(size, first uint16) *pcp.PortSet { return &pcp.PortSet{Size: size, FirstInternalPort: first} }
	good := grant("192.0.2.1", 4096, ps(4096, 4096), time.Hour)
	if r, err := validateGrant(good, 65535); err != nil || r != (portset.Range{First: 4096, Size: 4096}) {
		t.Fatalf("good grant: %v %v", r, err)
	}
	if r, err := validateGrant(grant("192.0.2.1", 7, nil, time.Hour), 65535); err != nil || r != (portset.Range{First: 7, Size: 1}) {
		t.Fatalf("single port without PORT_SET (RFC 7753 §4.2): %v %v", r, err)
	}
	for name, m := range map[string]*pcp.Mapping{
		"echo: 0.0.0.0, 65535 from 0":   grant("0.0.0.0", 0, ps(65535, 0), time.Hour),
		"echo with a suggested address": grant("192.0.2.1", 0, ps(65535, 0), time.Hour),
		"holds port 0":                  grant("192.0.2.1", 0, ps(1024, 0), time.Hour),
		"more than asked":               grant("192.0.2.1", 32768, ps(32768, 32768), time.Hour),
		"not a power of two":            grant("192.0.2.1", 4096, ps(3000, 4096), time.Hour),
		"not aligned":                   grant("192.0.2.1", 4100, ps(1024, 4100), time.Hour),
		"past 65535":                    grant("192.0.2.1", 65535, ps(1024, 65535), time.Hour),
		"internal != external":          grant("192.0.2.1", 4096, ps(1024, 0), time.Hour),
		"PORT_SET of size 1":            grant("192.0.2.1", 4096, ps(1, 4096), time.Hour),
		"lifetime 0":                    grant("192.0.2.1", 4096, ps(1024, 4096), 0),
		"softwire address":              grant("192.0.0.2", 4096, ps(1024, 4096), time.Hour),
		"loopback":                      grant("127.0.0.1", 4096, ps(1024, 4096), time.Hour),
		"multicast":                     grant("224.0.0.1", 4096, ps(1024, 4096), time.Hour),
		"broadcast":                     grant("255.255.255.255", 4096, ps(1024, 4096), time.Hour),
		"link-local":                    grant("169.254.0.1", 4096, ps(1024, 4096), time.Hour),
		"IPv6":                          grant("2001:db8::1", 4096, ps(1024, 4096), time.Hour),
	} {
		asked := uint16(65535)
		if name == "more than asked" {
			asked = 16384
		}
		if r, err := validateGrant(m, asked); !errors.Is(err, ErrBadGrant) {
			t.Errorf("%s: accepted as %v (%v)", name, r, err)
		}
	}
}

// Issue 11 item 3: an ICMPv6 1/5 from the AFTR's address that quotes no
// packet of the current binding — a port outside the set, another inner
// source, another protocol than 4in6, a packet sent under an old set —
// changes nothing and is counted; a genuine one re-provisions.
func TestICMPv6NotCurrentIgnored(t *testing.T) {
	e := newEnv(t, newHandler(3600), nil)
	e.provisioned()
	remote := netip.AddrPortFrom(testRemote, 53)
	sent, port := outbound(t, e, netip.AddrPortFrom(testHost, 5000), remote, 0, 64, []byte("q"))

	forge := func(f func(inv []byte)) []byte {
		inv := append([]byte(nil), sent...)
		f(inv)
		return icmp6(testAFTR, packet.ICMPv6CodeSourcePolicy, inv)
	}
	inner := packet.IPv6HeaderLen
	cases := map[string][]byte{
		"source port outside the set": forge(func(inv []byte) { inv[inner+20], inv[inner+21] = 0, 100 }),
		"another inner source":        forge(func(inv []byte) { copy(inv[inner+12:], []byte{203, 0, 113, 10}) }),
		"next header not 4":           forge(func(inv []byte) { inv[6] = packet.ProtoUDP }),
		"truncated before the ports":  icmp6(testAFTR, packet.ICMPv6CodeSourcePolicy, sent[:inner+20]),
	}
	for name, pkt := range cases {
		before := pkts(e.b, "drop-icmpv6-not-current-binding")
		e.b.FromAccess(pkt)
		if pkts(e.b, "drop-icmpv6-not-current-binding") != before+1 {
			t.Errorf("%s: not counted", name)
		}
	}
	before := pkts(e.b, "drop-icmpv6-not-from-aftr")
	e.b.FromAccess(icmp6(testSpoof, packet.ICMPv6CodeSourcePolicy, sent))
	e.b.FromAccess(forge(func(inv []byte) { copy(inv[8:24], testOther6.AsSlice()) }))
	if got := pkts(e.b, "drop-icmpv6-not-from-aftr") + pkts(e.b, "drop-wrong-source-ipv6"); got < before+2 {
		t.Errorf("forged sources: %d counted", got-before)
	}
	if s := e.b.Status(); !s.Provisioned || s.Counters["in-icmpv6-no-binding-packets"] != 0 || s.Counters["reprovision-packets"] != 0 {
		t.Fatalf("a 1/5 not about the current binding acted on: %+v", s)
	}
	e.noReq(300 * time.Millisecond)

	// The AFTR gives another set after a genuine 1/5; the old packet's
	// late 1/5 must then not knock the fresh binding out.
	e.h.set(func(h *handler) { h.first = 8192 })
	e.b.FromAccess(icmp6(testAFTR, packet.ICMPv6CodeSourcePolicy, sent))
	e.nextReq(2 * time.Second)
	waitStatus(t, e.b, 2*time.Second, "moved to 8192", func(s Status) bool { return s.Provisioned && s.Ports.First == 8192 })
	e.b.FromAccess(icmp6(testAFTR, packet.ICMPv6CodeSourcePolicy, sent))
	if s := e.b.Status(); !s.Provisioned || s.Counters["reprovision-packets"] != 1 {
		t.Fatalf("the late 1/5 about port %d of the old set acted on: %+v", port, s)
	}
	e.noReq(300 * time.Millisecond)
}

// Issue 11 item 1 (B4 side), RFC 6890: LAN traffic to special-purpose
// destinations never enters the softwire. Above all a LAN host's PCP to the
// AFTR's 192.0.0.1:5351 never reaches the access link, where the AFTR
// would take it for the B4's own.
func TestSpecialDestinationsDropped(t *testing.T) {
	e := newEnv(t, newHandler(3600), nil)
	e.provisioned()
	host := netip.AddrPortFrom(testHost, 40000)
	mapReq, _ := pcp.Marshal(&pcp.Message{Opcode: pcp.OpMap, Lifetime: 86400, ClientIP: testHost,
		Map: &pcp.MapData{ExternalIP: netip.IPv4Unspecified()}, Options: []pcp.Option{pcp.PortSetOption(pcp.PortSet{Size: 65535})}})
	for dst, counter := range map[string]string{
		"192.0.0.1:5351":       "drop-dst-softwire-ipv4",
		"192.0.0.2:5350":       "drop-dst-softwire-ipv4",
		"0.0.0.1:53":           "drop-dst-this-network-ipv4",
		"127.0.0.1:53":         "drop-dst-loopback-ipv4",
		"169.254.169.254:80":   "drop-dst-link-local-ipv4",
		"224.0.0.251:5353":     "drop-dst-multicast-ipv4",
		"240.0.0.1:53":         "drop-dst-reserved-ipv4",
		"255.255.255.255:67":   "drop-dst-reserved-ipv4",
		"239.255.255.250:1900": "drop-dst-multicast-ipv4",
	} {
		before := pkts(e.b, counter)
		e.b.FromLAN(udp4(host, netip.MustParseAddrPort(dst), 0, 64, mapReq))
		if pkts(e.b, counter) != before+1 {
			t.Errorf("to %s: %s not counted", dst, counter)
		}
	}
	e.quiet(100 * time.Millisecond)
	select {
	case r := <-e.aftr.reqs:
		t.Fatalf("a LAN host's PCP reached the AFTR: %+v", r.msg)
	default:
	}
	if n := pkts(e.b, "out-ipv6"); n != 1 {
		t.Errorf("out-ipv6 = %d, want only the B4's own MAP", n)
	}

	// --allow-loopback (the laptop lab) lets 127/8 through, nothing else.
	l := newEnv(t, newHandler(3600), func(c *Config) { c.AllowLoopback = true })
	l.provisioned()
	l.b.FromLAN(udp4(host, netip.MustParseAddrPort("127.0.0.1:53"), 0, 64, []byte("q")))
	l.nextData(time.Second)
	l.b.FromLAN(udp4(host, netip.MustParseAddrPort("192.0.0.1:5351"), 0, 64, mapReq))
	l.quiet(50 * time.Millisecond)
}

// RFC 6887 §15.1, RFC 7753 §4.4, issue 7 item 3: when Run ends the B4
// deletes its binding (MAP lifetime 0 with PORT_SET, same nonce, no
// suggestion) unless KeepBinding.
func TestDeleteOnShutdown(t *testing.T) {
	for _, keep := range []bool{false, true} {
		e := newEnv(t, newHandler(3600), func(c *Config) { c.KeepBinding = keep })
		r1, _ := e.provisioned()
		e.cancel()
		if err := <-e.ran; err != nil {
			t.Fatalf("Run: %v", err)
		}
		e.cancel = nil // Run is done: stop must not wait for it again
		select {
		case r := <-e.aftr.reqs:
			if keep {
				t.Fatalf("KeepBinding: a request was sent at shutdown: %+v", r.msg)
			}
			m := r.msg
			if m == nil || m.Opcode != pcp.OpMap || m.Lifetime != 0 || m.Map.Nonce != r1.msg.Map.Nonce ||
				m.Map.Protocol != 0 || m.Map.InternalPort != 0 || m.Map.ExternalPort != 0 || !m.Map.ExternalIP.Unmap().IsUnspecified() {
				t.Fatalf("delete %+v", m)
			}
			if ps, ok, _ := m.PortSet(); !ok || ps.Size != e.b.cfg.PortSetSize {
				t.Errorf("delete without PORT_SET (RFC 7753 §4.4): %+v", ps)
			}
			if s := e.b.Status(); s.Provisioned {
				t.Error("still provisioned after the delete")
			}
		default:
			if !keep {
				t.Fatal("no delete at shutdown")
			}
		}
	}
}

// A delete the AFTR never answers delays the shutdown by deleteWait, not
// more.
func TestDeleteOnShutdownBounded(t *testing.T) {
	e := newEnv(t, newHandler(3600), nil)
	e.provisioned()
	e.aftr.silent.Store(true)
	start := time.Now()
	e.cancel()
	if err := <-e.ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
	e.cancel = nil
	if d := time.Since(start); d < deleteWait {
		t.Errorf("Run returned %v after cancel: the delete was not waited for", d)
	}
	if r := e.nextReq(time.Second); r.msg.Lifetime != 0 {
		t.Errorf("last request lifetime %d, want the delete", r.msg.Lifetime)
	}
}

// Issue 7 item 4: a static binding is used as is, with no PCP at all; an
// ICMPv6 1/5 is counted but changes nothing, and shutdown deletes nothing.
func TestStaticProvisioning(t *testing.T) {
	set := portset.Range{First: 8192, Size: 2048}
	e := newEnv(t, newHandler(3600), func(c *Config) { c.StaticIPv4, c.StaticPorts = testPublic, set })
	e.run()
	s := waitStatus(t, e.b, 2*time.Second, "provisioned", func(s Status) bool { return s.Provisioned })
	if s.PublicIPv4 != testPublic || s.Ports != set || s.Provisionings != 1 {
		t.Fatalf("status %+v", s)
	}
	sent, port := outbound(t, e, netip.AddrPortFrom(testHost, 5000), netip.AddrPortFrom(testRemote, 53), 0, 64, nil)
	if !set.Contains(port) {
		t.Fatalf("port %d outside the static set", port)
	}
	e.b.FromAccess(icmp6(testAFTR, packet.ICMPv6CodeSourcePolicy, sent))
	if s := e.b.Status(); !s.Provisioned || s.Counters["in-icmpv6-no-binding-packets"] != 1 {
		t.Fatalf("after a 1/5: %+v", s)
	}
	e.cancel()
	<-e.ran
	e.cancel = nil
	e.noReq(100 * time.Millisecond)

	for name, mod := range map[string]func(*Config){
		"ports without address": func(c *Config) { c.StaticPorts = set },
		"port 0":                func(c *Config) { c.StaticIPv4, c.StaticPorts = testPublic, portset.Range{First: 0, Size: 1024} },
		"unaligned":             func(c *Config) { c.StaticIPv4, c.StaticPorts = testPublic, portset.Range{First: 1000, Size: 1024} },
		"empty":                 func(c *Config) { c.StaticIPv4 = testPublic },
		"softwire address":      func(c *Config) { c.StaticIPv4, c.StaticPorts = netip.MustParseAddr("192.0.0.2"), set },
		"group not multicast":   func(c *Config) { c.AnnounceGroup = testAFTR },
	} {
		cfg := testConfig()
		mod(&cfg)
		if _, err := New(cfg, newChanLink(), newChanLink()); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: New = %v, want ErrConfig", name, err)
		}
	}
}

// Re-requests after lost bindings: the first within 0-250 ms, quick
// repeats backing off exponentially with jitter.
func TestLostBackOff(t *testing.T) {
	e := newEnv(t, newHandler(3600), nil)
	p := provisioner{b: e.b}
	if d := p.lost("1"); d < 0 || d >= firstLossJitter {
		t.Errorf("first loss waits %v, want [0, %v)", d, firstLossJitter)
	}
	seen := map[time.Duration]bool{}
	for i, base := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		p.provisionedAt = e.b.now() // provisioned again, lost at once
		d := p.lost("again")
		if d < base/2 || d >= base*3/2 {
			t.Errorf("repeat %d waits %v, want [%v, %v)", i+1, d, base/2, base*3/2)
		}
		seen[d] = true
	}
	// With ±50 % jitter three exact powers of two would be a broken source.
	if seen[time.Second] && seen[2*time.Second] && seen[4*time.Second] {
		t.Error("no jitter")
	}
	// A binding that held (an AFTR that restarted, gave the set back and
	// restarted again some seconds later) starts a new episode: no
	// growing wait.
	p.provisionedAt = e.b.now().Add(-heldLong)
	if d := p.lost("after a binding that held"); d < 0 || d >= firstLossJitter {
		t.Errorf("loss after a binding that held waits %v, want [0, %v)", d, firstLossJitter)
	}
}
