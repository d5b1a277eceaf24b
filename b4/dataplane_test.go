package b4

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/frag"
	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/portset"
)

var testSet = portset.Range{First: testFirst, Size: uint32(testSize)}

// outbound sends a UDP packet from a LAN host through the B4 and returns
// the softwire packet it became and the external port chosen.
func outbound(t *testing.T, e *env, src, dst netip.AddrPort, tos, ttl uint8, data []byte) ([]byte, uint16) {
	t.Helper()
	e.b.FromLAN(udp4(src, dst, tos, ttl, data))
	out := e.nextData(time.Second)
	var outer packet.IPv6
	ip4, err := packet.Decapsulate(out, &outer)
	if err != nil {
		t.Fatalf("softwire packet: %v", err)
	}
	var u packet.UDP
	if err := packet.ParseUDP4(ip4, &u); err != nil {
		t.Fatalf("inner UDP: %v", err)
	}
	return out, u.SrcPort
}

// RFC 7596 §5.1, PROTOCOL.md §3.4, §3.6 and §8 item 8: NAPT44 into the
// provisioned address and set, 4in6 to the AFTR with the TOS copied into
// the traffic class (RFC 6333 §7.1), the inner TTL decremented; the answer
// back from the AFTR reaches the LAN host, its traffic class copied back.
func TestDataPathUDP(t *testing.T) {
	e := newEnv(t, newHandler(3600), nil)
	e.provisioned()
	lanSrc := netip.AddrPortFrom(testHost, 5000)
	remote := netip.AddrPortFrom(testRemote, 53)

	e.b.FromLAN(udp4(lanSrc, remote, 0x28, 64, []byte("query")))
	out := e.nextData(time.Second)
	var outer packet.IPv6
	ip4, err := packet.Decapsulate(out, &outer)
	if err != nil {
		t.Fatalf("softwire packet: %v", err)
	}
	if outer.SrcAddr() != testB4 || outer.DstAddr() != testAFTR || outer.HopLimit != 64 {
		t.Errorf("outer %v -> %v hop limit %d, want %v -> %v, 64", outer.SrcAddr(), outer.DstAddr(), outer.HopLimit, testB4, testAFTR)
	}
	if outer.TrafficClass != 0x28 {
		t.Errorf("RFC 6333 §7.1: traffic class %#x, want the TOS 0x28", outer.TrafficClass)
	}
	if fl := binary.BigEndian.Uint32(out) & 0xfffff; fl != 0 {
		t.Errorf("RFC 2473 §6.5: flow label %#x, want 0", fl)
	}
	var u packet.UDP
	if err := packet.ParseUDP4(ip4, &u); err != nil {
		t.Fatalf("inner UDP (checksum updated?): %v", err)
	}
	if ip4.SrcAddr() != testPublic || !testSet.Contains(u.SrcPort) {
		t.Errorf("inner source %v:%d, want %v and a port in %v", ip4.SrcAddr(), u.SrcPort, testPublic, testSet)
	}
	if ip4.DstAddr() != testRemote || u.DstPort != 53 || string(u.Data) != "query" {
		t.Errorf("inner destination %v:%d data %q changed", ip4.DstAddr(), u.DstPort, u.Data)
	}
	if ip4.TTL() != 63 || ip4.TOS() != 0x28 {
		t.Errorf("inner TTL %d TOS %#x, want 63 and 0x28", ip4.TTL(), ip4.TOS())
	}

	pub := netip.AddrPortFrom(testPublic, u.SrcPort)
	e.b.FromAccess(softwire(testAFTR, testB4, 0x48, udp4(remote, pub, 0, 50, []byte("answer"))))
	in := e.nextLAN(time.Second)
	if err := packet.ParseUDP4(in, &u); err != nil {
		t.Fatalf("LAN UDP (checksum updated?): %v", err)
	}
	if in.DstAddr() != testHost || u.DstPort != 5000 || in.SrcAddr() != testRemote || u.SrcPort != 53 || string(u.Data) != "answer" {
		t.Errorf("to the LAN %v:%d -> %v:%d %q, want %v -> %v", in.SrcAddr(), u.SrcPort, in.DstAddr(), u.DstPort, u.Data, remote, lanSrc)
	}
	if in.TTL() != 49 {
		t.Errorf("TTL %d, want 49", in.TTL())
	}
	if in.TOS() != 0x48 {
		t.Errorf("RFC 6333 §7.1: TOS %#x, want the traffic class 0x48", in.TOS())
	}
	s := e.b.Status()
	for name, want := range map[string]uint64{"in-ipv4": 1, "out-ipv4": 1, "in-ipv6": 2, "out-ipv6": 2, "in-to-self-ipv4": 1} {
		if got := s.Counters[name+"-packets"]; got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
}

// A LAN packet whose TTL would reach 0 is answered with ICMPv4 time
// exceeded from the gateway, not forwarded (RFC 1812 §5.3.1).
func TestTTLExceededFromLAN(t *testing.T) {
	e := newEnv(t, newHandler(3600), nil)
	e.provisioned()
	pkt := udp4(netip.AddrPortFrom(testHost, 5000), netip.AddrPortFrom(testRemote, 53), 0, 1, []byte("q"))
	e.b.FromLAN(bytes.Clone(pkt))
	checkICMPv4(t, e.nextLAN(time.Second), packet.ICMPv4TimeExceeded, 0, pkt)
	e.quiet(50 * time.Millisecond)
	if pkts(e.b, "drop-ttl-zero-ipv4") != 1 {
		t.Error("drop-ttl-zero-ipv4 not counted")
	}
}

// checkICMPv4 checks an ICMPv4 error from the B4's gateway address to the
// LAN host that quotes the start of invoking.
func checkICMPv4(t *testing.T, ip4 packet.IPv4, typ, code uint8, invoking []byte) {
	t.Helper()
	if ip4.Protocol() != packet.ProtoICMP || ip4.SrcAddr() != testGW || ip4.DstAddr() != testHost {
		t.Fatalf("not an ICMPv4 from %v to %v: %x", testGW, testHost, ip4)
	}
	m := ip4.Payload()
	if m[0] != typ || m[1] != code {
		t.Errorf("ICMPv4 %d/%d, want %d/%d", m[0], m[1], typ, code)
	}
	if !bytes.HasPrefix(invoking, m[8:min(len(m), 8+28)]) {
		t.Errorf("does not quote the invoking packet: %x", m[8:])
	}
}

// RFC 7596 §5.1: before a port set is provisioned, the B4 has no IPv4
// service: LAN packets are dropped and answered with ICMPv4 net
// unreachable; nothing enters the softwire.
func TestNotProvisioned(t *testing.T) {
	e := newEnv(t, newHandler(3600), nil) // Run not started
	pkt := udp4(netip.AddrPortFrom(testHost, 5000), netip.AddrPortFrom(testRemote, 53), 0, 64, []byte("q"))
	e.b.FromLAN(bytes.Clone(pkt))
	checkICMPv4(t, e.nextLAN(time.Second), packet.ICMPv4DstUnreachable, 0, pkt)

	// RFC 1812 §4.3.2.7: no ICMP error about an ICMP error.
	icmpErr := packet.ICMPv4Error(packet.ICMPv4DstUnreachable, 3, 0, testHost.As4(), testRemote.As4(), 64, udp4(netip.AddrPortFrom(testRemote, 53), netip.AddrPortFrom(testHost, 5000), 0, 60, nil), 576)
	e.b.FromLAN(icmpErr)
	// Nor does anything from the access side reach the LAN.
	e.b.FromAccess(softwire(testAFTR, testB4, 0, udp4(netip.AddrPortFrom(testRemote, 53), netip.AddrPortFrom(testPublic, 5000), 0, 64, nil)))
	e.quiet(50 * time.Millisecond)
	s := e.b.Status()
	if s.Counters["drop-not-provisioned-ipv4-packets"] != 2 || s.Counters["out-icmpv4-packets"] != 1 || s.Counters["drop-nat-inbound-ipv4-packets"] != 1 {
		t.Errorf("counters %v", s.Counters)
	}
}

// RFC 7596 §5.1: the B4 drops softwire packets whose outer source is not
// its AFTR and packets for an address or port outside its configuration.
func TestAccessDrops(t *testing.T) {
	e := newEnv(t, newHandler(3600), nil)
	e.provisioned()
	remote := netip.AddrPortFrom(testRemote, 53)
	_, port := outbound(t, e, netip.AddrPortFrom(testHost, 5000), remote, 0, 64, []byte("q"))
	live := netip.AddrPortFrom(testPublic, port) // an endpoint-independent mapping
	toPublic := func(dst netip.AddrPort) []byte { return udp4(remote, dst, 0, 64, []byte("a")) }

	badCsum := toPublic(live)
	badCsum[10] ^= 0xff
	notIPIP := make([]byte, packet.IPv6HeaderLen+8)
	packet.PutIPv6Header(notIPIP, 0, 8, packet.ProtoUDP, 64, testAFTR.As16(), testB4.As16())

	cases := []struct {
		name    string
		pkt     []byte
		counter string
	}{
		{"RFC 7596 §5.1: outer source not the AFTR", softwire(testSpoof, testB4, 0, toPublic(live)), "drop-wrong-source-ipv6"},
		{"RFC 7596 §5.1: outer source another B4", softwire(testOther6, testB4, 0, toPublic(live)), "drop-wrong-source-ipv6"},
		{"RFC 7596 §5.1: port below the set", softwire(testAFTR, testB4, 0, toPublic(netip.AddrPortFrom(testPublic, 100))), "drop-nat-inbound-ipv4"},
		{"RFC 7596 §5.1: port above the set", softwire(testAFTR, testB4, 0, toPublic(netip.AddrPortFrom(testPublic, 8192))), "drop-nat-inbound-ipv4"},
		{"RFC 7596 §5.1: address not ours", softwire(testAFTR, testB4, 0, toPublic(netip.AddrPortFrom(netip.MustParseAddr("203.0.113.10"), port))), "drop-nat-inbound-ipv4"},
		{"RFC 4787: port in the set without a mapping", softwire(testAFTR, testB4, 0, toPublic(netip.AddrPortFrom(testPublic, port^1))), "drop-nat-inbound-ipv4"},
		{"outer destination not the B4", softwire(testAFTR, testOther6, 0, toPublic(live)), "drop-wrong-dst-ipv6"},
		{"RFC 2473: next header not 4", notIPIP, "drop-unknown-protocol-ipv6"},
		{"truncated IPv6", softwire(testAFTR, testB4, 0, toPublic(live))[:30], "drop-malformed-ipv6"},
		{"inner IPv4 header checksum", softwire(testAFTR, testB4, 0, badCsum), "drop-malformed-ipv4"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := pkts(e.b, tc.counter)
			e.b.FromAccess(tc.pkt)
			e.quiet(30 * time.Millisecond)
			if got := pkts(e.b, tc.counter); got != before+1 {
				t.Errorf("%s = %d, want %d", tc.counter, got, before+1)
			}
		})
	}
	// The mapping itself is fine: the same packet from the AFTR passes.
	e.b.FromAccess(softwire(testAFTR, testB4, 0, toPublic(live)))
	if in := e.nextLAN(time.Second); in.DstAddr() != testHost {
		t.Errorf("control packet went to %v", in.DstAddr())
	}
}

// icmp6 builds an ICMPv6 destination unreachable from src to the B4.
func icmp6(src netip.Addr, code uint8, invoking []byte) []byte {
	return packet.ICMPv6Error(packet.ICMPv6DstUnreachable, code, 0, src.As16(), testB4.As16(), 64, invoking, packet.MaxICMPv6Error)
}

// RFC 7596 §5.1, PROTOCOL.md §3.5 and §8 item 5, issue 11 item 3: an
// ICMPv6 1/5 from the AFTR about a packet the B4 sent under its current
// binding takes the set out of use; the B4 asks again, suggesting the
// address and port it held, with the same nonce, and is provisioned again.
// The NAT keeps its sessions meanwhile, so that a flow whose port the new
// set still holds survives (here the AFTR gives the same set back).
func TestICMPv6SourcePolicyReprovisions(t *testing.T) {
	e := newEnv(t, newHandler(3600), nil)
	r1, _ := e.provisioned()
	remote := netip.AddrPortFrom(testRemote, 53)
	sent, port := outbound(t, e, netip.AddrPortFrom(testHost, 5000), remote, 0, 64, []byte("q"))

	e.aftr.hold() // look at the B4 between the error and the new answer
	e.b.FromAccess(icmp6(testAFTR, packet.ICMPv6CodeSourcePolicy, sent))
	s := e.b.Status()
	if s.Provisioned {
		t.Error("still provisioned after ICMPv6 1/5")
	}
	if s.NAT.Mappings != 1 || s.NAT.UDPSessions != 1 {
		t.Errorf("NAT flushed on a 1/5: %+v", s.NAT)
	}
	if s.Counters["in-icmpv6-no-binding-packets"] != 1 || s.Counters["reprovision-packets"] != 1 {
		t.Errorf("counters %v", s.Counters)
	}
	r2 := e.nextReq(2 * time.Second)
	checkMapRequest(t, r2, e.b.cfg, netip.MustParseAddr("::ffff:203.0.113.9"), testFirst)
	if r2.msg.Map.Nonce != r1.msg.Map.Nonce {
		t.Error("RFC 6887 §11.2: the nonce changed")
	}
	// Meanwhile the LAN has no IPv4 service.
	e.b.FromLAN(udp4(netip.AddrPortFrom(testHost, 5001), remote, 0, 64, nil))
	if m := e.nextLAN(time.Second); m.Protocol() != packet.ProtoICMP {
		t.Errorf("want ICMPv4 net unreachable, got %x", m)
	}

	e.aftr.release()
	s = waitStatus(t, e.b, 2*time.Second, "provisioned again", func(s Status) bool { return s.Provisioned })
	if s.Provisionings != 2 || s.PublicIPv4 != testPublic || s.Ports != testSet {
		t.Errorf("status %+v, want the same set and 2 provisionings", s)
	}
	// The old session survived: the answer reaches the host, and the
	// flow leaves on the same port.
	e.b.FromAccess(softwire(testAFTR, testB4, 0, udp4(remote, netip.AddrPortFrom(testPublic, port), 0, 64, nil)))
	if in := e.nextLAN(time.Second); in.DstAddr() != testHost {
		t.Errorf("answer to the kept flow went to %v", in.DstAddr())
	}
	if _, p2 := outbound(t, e, netip.AddrPortFrom(testHost, 5000), remote, 0, 64, []byte("q")); p2 != port {
		t.Errorf("kept flow left on port %d, before on %d", p2, port)
	}
	// New flows work.
	outbound(t, e, netip.AddrPortFrom(testHost, 5002), remote, 0, 64, nil)
}

// RFC 7596 §5.1, PROTOCOL.md §8 item 5: ICMPv6 errors that are not an
// AFTR's 1/5 about the B4's own packet change nothing.
func TestICMPv6SourcePolicyIgnored(t *testing.T) {
	e := newEnv(t, newHandler(3600), nil)
	e.provisioned()
	sent, _ := outbound(t, e, netip.AddrPortFrom(testHost, 5000), netip.AddrPortFrom(testRemote, 53), 0, 64, nil)
	otherSrc := bytes.Clone(sent)
	copy(otherSrc[8:24], testOther6.AsSlice())
	otherDst := bytes.Clone(sent)
	copy(otherDst[24:40], testSpoof.AsSlice())
	badCsum := icmp6(testAFTR, packet.ICMPv6CodeSourcePolicy, sent)
	badCsum[packet.IPv6HeaderLen+2] ^= 0xff

	cases := []struct {
		name    string
		pkt     []byte
		counter string
	}{
		{"RFC 7596 §5.1: from another source", icmp6(testSpoof, packet.ICMPv6CodeSourcePolicy, sent), "drop-wrong-source-ipv6"},
		{"§8 item 5: embeds another source's packet", icmp6(testAFTR, packet.ICMPv6CodeSourcePolicy, otherSrc), "drop-icmpv6-not-from-aftr"},
		{"§8 item 5: embeds a packet to another AFTR", icmp6(testAFTR, packet.ICMPv6CodeSourcePolicy, otherDst), "drop-icmpv6-not-from-aftr"},
		{"§8 item 5: embeds too little", icmp6(testAFTR, packet.ICMPv6CodeSourcePolicy, sent[:20]), "drop-icmpv6-not-from-aftr"},
		{"RFC 4443: 1/0 is not the no-binding answer", icmp6(testAFTR, 0, sent), "drop-icmpv6-other"},
		{"RFC 4443: bad checksum", badCsum, "drop-malformed-ipv6"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := pkts(e.b, tc.counter)
			e.b.FromAccess(tc.pkt)
			if got := pkts(e.b, tc.counter); got != before+1 {
				t.Errorf("%s = %d, want %d", tc.counter, got, before+1)
			}
		})
	}
	e.noReq(300 * time.Millisecond)
	s := e.b.Status()
	if !s.Provisioned || s.Provisionings != 1 || s.NAT.Mappings != 1 || s.Counters["reprovision-packets"] != 0 {
		t.Errorf("status changed: %+v", s)
	}
}

// RFC 7596 §5.1: re-provisioning on ICMPv6 1/5 is a policy; off, the B4
// counts the error and keeps its set.
func TestICMPv6SourcePolicyNoReprovision(t *testing.T) {
	e := newEnv(t, newHandler(3600), func(c *Config) { c.ReprovisionOnICMP = false })
	e.provisioned()
	sent, _ := outbound(t, e, netip.AddrPortFrom(testHost, 5000), netip.AddrPortFrom(testRemote, 53), 0, 64, nil)
	e.b.FromAccess(icmp6(testAFTR, packet.ICMPv6CodeSourcePolicy, sent))
	e.noReq(300 * time.Millisecond)
	s := e.b.Status()
	if !s.Provisioned || s.Provisionings != 1 || s.NAT.Mappings != 1 {
		t.Errorf("status changed: %+v", s)
	}
	if s.Counters["in-icmpv6-no-binding-packets"] != 1 || s.Counters["reprovision-packets"] != 0 {
		t.Errorf("counters %v", s.Counters)
	}
}

// RFC 2473 §7.2 (PROTOCOL.md §8 item 8): a LAN packet larger than the tunnel
// MTU with DF set is refused with ICMPv4 "fragmentation needed" carrying the
// tunnel MTU; without DF it leaves in IPv6 fragments that together hold the
// whole translated packet (RFC 6333 §5.3: fragment after encapsulation).
func TestTunnelMTUFromLAN(t *testing.T) {
	e := newEnv(t, newHandler(3600), func(c *Config) { c.TunnelMTU = 1280 })
	e.provisioned()
	big := udp4(netip.AddrPortFrom(testHost, 5000), netip.AddrPortFrom(testRemote, 53), 0, 64, make([]byte, 1400))
	df := bytes.Clone(big)
	df[6] |= 0x40
	packet.SetIPv4HeaderChecksum(df)
	e.b.FromLAN(bytes.Clone(df))
	ic := e.nextLAN(time.Second)
	checkICMPv4(t, ic, packet.ICMPv4DstUnreachable, 4, df)
	if mtu := binary.BigEndian.Uint32(ic.Payload()[4:]); mtu != 1280 {
		t.Errorf("fragmentation needed carries MTU %d, want 1280", mtu)
	}
	e.b.FromLAN(bytes.Clone(big))
	f1, f2 := e.nextData(time.Second), e.nextData(time.Second)
	r := frag.NewReassembler6(frag.Config{})
	if _, err := r.Add(f1); err != nil {
		t.Fatal(err)
	}
	whole, err := r.Add(f2)
	if err != nil || whole == nil {
		t.Fatalf("fragments do not reassemble: %v", err)
	}
	if len(f1) > 1320 || len(f2) > 1320 {
		t.Errorf("fragments of %d and %d octets exceed the 1320-octet access MTU", len(f1), len(f2))
	}
	var outer packet.IPv6
	ip4, err := packet.Decapsulate(whole, &outer)
	if err != nil || len(ip4) != len(big) {
		t.Fatalf("reassembled packet: %d octets, %v", len(ip4), err)
	}
	if pkts(e.b, "drop-over-mtu-but-dont-fragment-ipv4") != 1 || pkts(e.b, "out-ipv6-frag") != 2 {
		t.Errorf("counters %v", e.b.Status().Counters)
	}
}
