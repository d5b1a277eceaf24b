package aftr

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/stack/frag"
	"github.com/lw4o6/lw4o6/stack/packet"
)

// The reassembly and fragmentation stages, the wrong-side drops, per-
// softwire BR addresses, the echo responders, ICMPv6 errors translated,
// and each Snabb knob against its RFC default.

// bigUDP4 is a UDP datagram of n octets in all, DF as given.
func bigUDP4(src, dst netip.Addr, sport, dport uint16, n int, df bool) []byte {
	b := udp4(src, dst, sport, dport, 64, bytes.Repeat([]byte{0xa5}, n-28))
	binary.BigEndian.PutUint16(b[4:], 0x1234)
	if df {
		b[6] |= 0x40
	}
	packet.SetIPv4HeaderChecksum(b)
	return b
}

// Snabb's wrong-interface cases: IPv6 on the IPv4 side and
// IPv4 on the IPv6 side are counted drops.
func TestWrongSide(t *testing.T) {
	r := newRig(t, nil)
	ip, first, _ := r.bind(tB4A, 1)
	r.a.FromInternet(encap(tB4A, tAFTR, udp4(ip, tRemote, first, 53, 64, nil)))
	r.a.FromAccess(udp4(tRemote, ip, 53, first, 64, nil))
	r.quiet()
	if r.counter("drop-misplaced-not-ipv4") != 1 || r.counter("drop-misplaced-not-ipv6") != 1 {
		t.Errorf("counters %v", r.a.Counters())
	}
}

// RFC 7597 §8.3.2, RFC 6346 §5.3.3: IPv4 fragments from the Internet are
// reassembled before the port lookup; the datagram keeps its ID and DF
// (RFC 791) unless ZeroReassembledIDAndFlags (Snabb).
func TestIPv4ReassemblyBeforeLookup(t *testing.T) {
	for _, zero := range []bool{false, true} {
		r := newRig(t, func(c *Config) { c.ZeroReassembledIDAndFlags = zero })
		ip, first, _ := r.bind(tB4A, 1)
		d := bigUDP4(tRemote, ip, 53, first+1, 1400, false)
		frags, err := frag.FragmentIPv4(d, 576)
		if err != nil || len(frags) != 3 {
			t.Fatalf("FragmentIPv4: %v, %d", err, len(frags))
		}
		for i := len(frags) - 1; i >= 0; i-- { // out of order
			r.a.FromInternet(bytes.Clone(frags[i]))
		}
		got := r.softwireTo(r.oneAccess(), tB4A)
		want := bytes.Clone(d)
		want[8]--
		if zero {
			clear(want[4:8])
		}
		packet.SetIPv4HeaderChecksum(want)
		if !bytes.Equal(got, want) {
			t.Errorf("zero=%v: reassembled\n% x\nwant\n% x", zero, got[:28], want[:28])
		}
		if r.counter("in-ipv4-frag-needs-reassembly") != 3 || r.counter("in-ipv4-frag-reassembled") != 1 {
			t.Errorf("counters %v", r.a.Counters())
		}
	}
}

// Reassembly is bounded: fragments per datagram (one more discards the
// datagram, counted), and time (a datagram past the timeout is dropped).
func TestReassemblyBounds(t *testing.T) {
	r := newRig(t, func(c *Config) {
		c.Reassembly4 = frag.Config{MaxFragmentsPerPacket: 2, Timeout: 10 * time.Second}
	})
	ip, first, _ := r.bind(tB4A, 1)
	frags, _ := frag.FragmentIPv4(bigUDP4(tRemote, ip, 53, first, 1400, false), 576)
	for _, f := range frags {
		r.a.FromInternet(bytes.Clone(f))
	}
	r.quiet()
	if got := r.counter("drop-ipv4-frag-too-many-fragments"); got != 1 {
		t.Errorf("drop-ipv4-frag-too-many-fragments %d, want 1 (%v)", got, r.a.Counters())
	}
	frags, _ = frag.FragmentIPv4(bigUDP4(tRemote, ip, 53, first, 1000, false), 576)
	r.a.FromInternet(bytes.Clone(frags[0]))
	r.clock.Advance(11 * time.Second)
	r.a.Expire()
	r.a.FromInternet(bytes.Clone(frags[1]))
	r.quiet()
	if got := r.a.Counters()["drop-ipv4-frag-timed-out-packets"]; got != 1 {
		t.Errorf("timed out %d, want 1 (%v)", got, r.a.Counters())
	}

	// Datagrams in flight: past MaxPackets the oldest is evicted, counted.
	r = newRig(t, func(c *Config) { c.Reassembly6 = frag.Config{MaxPackets: 1} })
	ip, first, _ = r.bind(tB4A, 1)
	var firsts [][]byte
	for id := range uint32(2) {
		fs, err := frag.FragmentIPv6(encap(tB4A, tAFTR, bigUDP4(ip, tRemote, first, 53, 1400, false)), 1280, id)
		if err != nil {
			t.Fatal(err)
		}
		r.a.FromAccess(fs[0])
		firsts = append(firsts, fs[1])
	}
	r.a.FromAccess(firsts[1])
	r.oneInternet()
	r.a.FromAccess(firsts[0]) // its datagram was evicted
	r.quiet()
	if got := r.a.Counters()["drop-ipv6-frag-evicted-packets"]; got != 1 {
		t.Errorf("evicted %d, want 1 (%v)", got, r.a.Counters())
	}
}

// RFC 6333 §6.3, RFC 2473 §7: IPv6 fragments from a B4 are reassembled
// before decapsulation; what is too big for AccessMTU is fragmented after
// encapsulation, with random IDs by default (RFC 7739) or Snabb's sequence.
func TestIPv6ReassemblyAndFragmentation(t *testing.T) {
	for _, seq := range []bool{false, true} {
		r := newRig(t, func(c *Config) {
			c.AccessMTU = 1280
			if seq {
				c.FragmentIDs = frag.SequentialIDs(0x4243, 0x42424243)
			}
		})
		ip, first, _ := r.bind(tB4A, 1)
		// Upstream: a 1400-octet datagram in two IPv6 fragments.
		up := bigUDP4(ip, tRemote, first, 53, 1400, false)
		frags, err := frag.FragmentIPv6(encap(tB4A, tAFTR, bytes.Clone(up)), 1280, 7)
		if err != nil || len(frags) != 2 {
			t.Fatalf("FragmentIPv6: %v %d", err, len(frags))
		}
		r.a.FromAccess(bytes.Clone(frags[0]))
		r.quiet()
		r.a.FromAccess(bytes.Clone(frags[1]))
		sameExceptTTLAndTOS(t, r.oneInternet(), up, 0)

		// Downstream: fragmented to 1280 after encapsulation.
		var ids []uint32
		for range 2 {
			d := bigUDP4(tRemote, ip, 53, first, 1400, false)
			r.a.FromInternet(bytes.Clone(d))
			out := r.access.take()
			if len(out) != 2 {
				t.Fatalf("%d packets, want 2 fragments", len(out))
			}
			re := frag.NewReassembler6(frag.Config{})
			var whole []byte
			for _, f := range out {
				if len(f) > 1280 {
					t.Errorf("fragment of %d octets over the MTU", len(f))
				}
				whole, _ = re.Add(f)
			}
			in := r.softwireTo(whole, tB4A)
			sameExceptTTLAndTOS(t, in, d, 0)
			ids = append(ids, binary.BigEndian.Uint32(out[0][44:]))
		}
		if seq && (ids[0] != 0x42424243 || ids[1] != 0x42424244) {
			t.Errorf("sequential IDs %#x, want 0x42424243, 0x42424244", ids)
		}
		if !seq && ids[1] == ids[0]+1 {
			t.Errorf("random IDs %#x look sequential", ids)
		}
	}
}

// RFC 2473 §7.2: a packet with DF too big for the tunnel is dropped and
// answered with ICMPv4 3/4 carrying the tunnel MTU (AccessMTU - 40).
func TestDownstreamDFTooBig(t *testing.T) {
	r := newRig(t, func(c *Config) { c.AccessMTU = 1280; c.IPv4Addr = tSelf4 })
	ip, first, _ := r.bind(tB4A, 1)
	d := bigUDP4(tRemote, ip, 53, first, 1300, true)
	r.a.FromInternet(d)
	e := mustIPv4(t, r.oneInternet())
	typ, code, _ := icmp4(t, e)
	if typ != 3 || code != 4 || binary.BigEndian.Uint16(e[26:]) != 1240 || e.DstAddr() != tRemote {
		t.Errorf("ICMPv4 %d/%d mtu %d to %v, want 3/4 mtu 1240 to %v", typ, code, binary.BigEndian.Uint16(e[26:]), e.DstAddr(), tRemote)
	}
	if r.counter("drop-over-mtu-but-dont-fragment-ipv4") != 1 {
		t.Errorf("counters %v", r.a.Counters())
	}
}

// RFC 791 §3.2: upstream packets over InternetMTU are fragmented, keeping
// their ID (NewIPv4FragmentIDs: Snabb's new ID); with DF, dropped and
// answered with ICMPv4 3/4 through the softwire (RFC 1191).
func TestUpstreamIPv4Fragmentation(t *testing.T) {
	for _, renumber := range []bool{false, true} {
		r := newRig(t, func(c *Config) {
			c.InternetMTU = 576
			c.NewIPv4FragmentIDs = renumber
			c.FragmentIDs = frag.SequentialIDs(0x4243, 0)
		})
		ip, first, _ := r.bind(tB4A, 1)
		r.a.FromAccess(encap(tB4A, tAFTR, bigUDP4(ip, tRemote, first, 53, 1000, false)))
		out := r.internet.take()
		if len(out) != 2 {
			t.Fatalf("%d packets, want 2 fragments", len(out))
		}
		want := uint16(0x1234)
		if renumber {
			want = 0x4243
		}
		for _, f := range out {
			if id := packet.IPv4(f).ID(); id != want || len(f) > 576 {
				t.Errorf("renumber=%v: fragment ID %#x (%d octets), want %#x", renumber, id, len(f), want)
			}
		}
		r.a.FromAccess(encap(tB4A, tAFTR, bigUDP4(ip, tRemote, first, 53, 1000, true)))
		in := r.softwireTo(r.oneAccess(), tB4A)
		if typ, code, _ := icmp4(t, in); typ != 3 || code != 4 || binary.BigEndian.Uint16(in[26:]) != 576 {
			t.Errorf("ICMPv4 %d/%d mtu %d, want 3/4 576", typ, code, binary.BigEndian.Uint16(in[26:]))
		}
	}
}

// Per-softwire BR addresses (Snabb's br-address): a B4 must tunnel to its
// own softwire's BR, which sources what it is sent; the AFTR answers echo
// and PCP on every one of its addresses, from the address asked.
func TestPerSoftwireBR(t *testing.T) {
	r := newRig(t, func(c *Config) {
		c.Static = []bindings.Binding{{B4: tB4C, IPv4: tShare, PSID: mustPSID(t, 0, 0, 0), BR: tBR2}}
	})
	r.a.FromInternet(udp4(tRemote, tShare, 53, 4000, 64, []byte("x")))
	var outer packet.IPv6
	if _, err := packet.Decapsulate(r.oneAccess(), &outer); err != nil || outer.SrcAddr() != tBR2 || outer.DstAddr() != tB4C {
		t.Errorf("downstream %v → %v (%v), want %v → %v", outer.SrcAddr(), outer.DstAddr(), err, tBR2, tB4C)
	}
	r.a.FromAccess(encap(tB4C, tBR2, udp4(tShare, tRemote, 4000, 53, 64, []byte("x"))))
	r.oneInternet()
	// To the AFTR's other address: not its softwire, 1/5 from that address.
	r.a.FromAccess(encap(tB4C, tAFTR, udp4(tShare, tRemote, 4000, 53, 64, []byte("x"))))
	m := r.icmp6To(r.oneAccess(), tB4C)
	if m.Type != 1 || m.Code != 5 {
		t.Errorf("ICMPv6 %d/%d, want 1/5", m.Type, m.Code)
	}
	r.a.FromAccess(packet.ICMPv6Echo(packet.ICMPv6EchoRequest, a16(tB4A), a16(tBR2), 64, 77, []byte("ping")))
	if err := packet.ParseIPv6(r.oneAccess(), &outer); err != nil || outer.SrcAddr() != tBR2 || outer.Payload[0] != packet.ICMPv6EchoReply {
		t.Errorf("echo reply from %v (%v), want from %v", outer.SrcAddr(), err, tBR2)
	}
	// Not an address of the AFTR: dropped.
	r.a.FromAccess(encap(tB4C, tB4A, udp4(tShare, tRemote, 4000, 53, 64, []byte("x"))))
	r.quiet()
}

// Echo to the AFTR's own IPv4 address is answered (RFC 1122 §3.2.2.6),
// whatever AllowIncomingICMPv4 says; other traffic to it is dropped.
func TestEchoToIPv4Addr(t *testing.T) {
	r := newRig(t, func(c *Config) { c.IPv4Addr = tSelf4; c.AllowIncomingICMPv4 = false })
	req := echo4(tRemote, tSelf4, packet.ICMPv4EchoRequest, 9, 1, 32)
	r.a.FromInternet(bytes.Clone(req))
	rep := mustIPv4(t, r.oneInternet())
	typ, _, body := icmp4(t, rep)
	if typ != 0 || rep.SrcAddr() != tSelf4 || rep.DstAddr() != tRemote || rep.TTL() != 64 || !bytes.Equal(body, req[28:]) {
		t.Errorf("reply %v → %v type %d TTL %d", rep.SrcAddr(), rep.DstAddr(), typ, rep.TTL())
	}
	r.a.FromInternet(udp4(tRemote, tSelf4, 53, 53, 64, nil))
	r.quiet()
	if r.counter("drop-to-self-ipv4") != 1 {
		t.Errorf("counters %v", r.a.Counters())
	}
	// From a B4: answered back into its softwire.
	ip, first, _ := r.bind(tB4A, 1)
	r.a.FromAccess(encap(tB4A, tAFTR, echo4(ip, tSelf4, packet.ICMPv4EchoRequest, first, 1, 64)))
	in := r.softwireTo(r.oneAccess(), tB4A)
	if typ, _, _ := icmp4(t, in); typ != 0 || in.SrcAddr() != tSelf4 || in.DstAddr() != ip {
		t.Errorf("reply type %d %v → %v", typ, in.SrcAddr(), in.DstAddr())
	}
}

// RFC 2473 §8.2: ICMPv6 errors about the AFTR's softwire packets reach the
// IPv4 host that sent them: packet too big as 3/4 with the MTU less the
// tunnel header, unreachable as 3/1; a reassembly timeout, an error about
// no packet of the AFTR's, and any with AllowIncomingICMPv6 off are
// dropped.
func TestICMPv6ErrorsTranslated(t *testing.T) {
	r := newRig(t, func(c *Config) { c.IPv4Addr = tSelf4 })
	ip, first, _ := r.bind(tB4A, 1)
	d := udp4(tRemote, ip, 53, first, 64, []byte("answer"))
	r.a.FromInternet(bytes.Clone(d))
	tunneled := r.oneAccess()
	router := netip.MustParseAddr("2001:db8:ffff::1")
	for _, c := range []struct {
		typ, code uint8
		param     uint32
		want      [2]uint8
		mtu       uint16
	}{
		{packet.ICMPv6PacketTooBig, 0, 1300, [2]uint8{3, 4}, 1260},
		{packet.ICMPv6DstUnreachable, 3, 0, [2]uint8{3, 1}, 0},
		{packet.ICMPv6TimeExceeded, 0, 0, [2]uint8{3, 1}, 0},
	} {
		r.a.FromAccess(packet.ICMPv6Error(c.typ, c.code, c.param, a16(router), a16(tAFTR), 64, tunneled, 1280))
		e := mustIPv4(t, r.oneInternet())
		typ, code, body := icmp4(t, e)
		if typ != c.want[0] || code != c.want[1] || binary.BigEndian.Uint16(e[26:]) != c.mtu || e.SrcAddr() != tSelf4 || e.DstAddr() != tRemote {
			t.Errorf("ICMPv6 %d/%d → ICMPv4 %d/%d mtu %d %v → %v", c.typ, c.code, typ, code, binary.BigEndian.Uint16(e[26:]), e.SrcAddr(), e.DstAddr())
		}
		if !bytes.Equal(body, tunneled[40:]) {
			t.Errorf("quoted\n% x\nwant\n% x", body, tunneled[40:])
		}
	}
	r.a.FromAccess(packet.ICMPv6Error(packet.ICMPv6TimeExceeded, 1, 0, a16(router), a16(tAFTR), 64, tunneled, 1280))
	forged := bytes.Clone(tunneled)
	copy(forged[24:40], tB4B.AsSlice()) // not the B4 that owns the port
	r.a.FromAccess(packet.ICMPv6Error(packet.ICMPv6DstUnreachable, 0, 0, a16(router), a16(tAFTR), 64, forged, 1280))
	r.quiet()
	if r.counter("drop-over-time-but-not-hop-limit-icmpv6") != 1 || r.counter("drop-not-about-softwire-icmpv6") != 1 {
		t.Errorf("counters %v", r.a.Counters())
	}
	r = newRig(t, func(c *Config) { c.IPv4Addr = tSelf4; c.AllowIncomingICMPv6 = false })
	r.a.FromAccess(packet.ICMPv6Error(packet.ICMPv6PacketTooBig, 0, 1300, a16(router), a16(tAFTR), 64, tunneled, 1280))
	r.quiet()
	if r.counter("drop-in-by-policy-icmpv6") != 1 {
		t.Errorf("counters %v", r.a.Counters())
	}
}

// RFC 7596 §8.1, RFC 5508: ICMPv4 from the Internet: refused by policy,
// bad checksums dropped, no binding discarded without an error.
func TestIncomingICMPv4(t *testing.T) {
	r := newRig(t, func(c *Config) { c.AllowIncomingICMPv4 = false })
	ip, first, size := r.bind(tB4A, 1)
	r.a.FromInternet(echo4(tRemote, ip, packet.ICMPv4EchoReply, first, 1, 64))
	r.quiet()
	if r.counter("drop-in-by-policy-icmpv4") != 1 {
		t.Errorf("counters %v", r.a.Counters())
	}
	r = newRig(t, func(c *Config) { c.IPv4Addr = tSelf4; c.ICMPv4OnNoBinding = true })
	ip, first, size = r.bind(tB4A, 1)
	bad := echo4(tRemote, ip, packet.ICMPv4EchoReply, first, 1, 64)
	bad[30] ^= 1
	r.a.FromInternet(bad)
	r.a.FromInternet(echo4(tRemote, ip, packet.ICMPv4EchoRequest, first+size, 1, 64))
	r.quiet()
	if r.counter("drop-bad-checksum-icmpv4") != 1 || r.counter("drop-in-by-rfc7596-icmpv4") != 1 {
		t.Errorf("counters %v", r.a.Counters())
	}
}

// The Snabb knobs against their defaults, one packet each.
func TestSnabbKnobs(t *testing.T) {
	t.Run("DecapDecrementsTTL", func(t *testing.T) {
		r := newRig(t, func(c *Config) { c.DecapDecrementsTTL = false })
		ipA, firstA, _ := r.bind(tB4A, 1)
		ipB, firstB, _ := r.bind(tB4B, 2)
		up := udp4(ipA, tRemote, firstA, 53, 64, []byte("q"))
		r.a.FromAccess(encap(tB4A, tAFTR, bytes.Clone(up)))
		if got := r.oneInternet(); !bytes.Equal(got, up) {
			t.Errorf("upstream TTL %d, want 64 untouched", got[8])
		}
		// Hairpinned: decremented once, at re-encapsulation.
		r.a.FromAccess(encap(tB4A, tAFTR, udp4(ipA, ipB, firstA, firstB, 64, []byte("q"))))
		if in := r.softwireTo(r.oneAccess(), tB4B); in.TTL() != 63 {
			t.Errorf("hairpinned TTL %d, want 63", in.TTL())
		}
		// TTL expiry on the hairpin: time exceeded back into A's softwire.
		r.a.FromAccess(encap(tB4A, tAFTR, udp4(ipA, ipB, firstA, firstB, 1, []byte("q"))))
		in := r.softwireTo(r.oneAccess(), tB4A)
		if typ, code, _ := icmp4(t, in); typ != 11 || code != 0 || in.DstAddr() != ipA || in.SrcAddr() != tAFTR4 {
			t.Errorf("ICMPv4 %d/%d %v → %v, want 11/0 %v → %v", typ, code, in.SrcAddr(), in.DstAddr(), tAFTR4, ipA)
		}
	})
	t.Run("TimeExceededQuotesDecrementedTTL", func(t *testing.T) {
		for _, on := range []bool{false, true} {
			r := newRig(t, func(c *Config) { c.IPv4Addr = tSelf4; c.TimeExceededQuotesDecrementedTTL = on })
			ip, first, _ := r.bind(tB4A, 1)
			r.a.FromInternet(udp4(tRemote, ip, 53, first, 1, []byte("x")))
			e := mustIPv4(t, r.oneInternet())
			_, _, body := icmp4(t, e)
			want := uint8(1)
			if on {
				want = 0
			}
			if body[8] != want {
				t.Errorf("on=%v: quoted TTL %d, want %d", on, body[8], want)
			}
			if _, err := packet.ParseIPv4(body); err != nil {
				t.Errorf("quoted header checksum: %v", err)
			}
			if e.TTL() != 64 {
				t.Errorf("ICMPv4 TTL %d, want ICMPv4ErrorTTL 64", e.TTL())
			}
		}
	})
	t.Run("EchoByPort0", func(t *testing.T) {
		for _, on := range []bool{false, true} {
			r := newRig(t, func(c *Config) {
				c.EchoByPort0 = on
				c.Static = []bindings.Binding{{B4: tB4C, IPv4: tShare, PSID: mustPSID(t, 0, 1, 0), BR: tAFTR}} // ports 0-32767
			})
			r.a.FromInternet(echo4(tRemote, tShare, packet.ICMPv4EchoRequest, 40000, 1, 64))
			if got := len(r.access.take()); (got == 1) != on {
				t.Errorf("on=%v: echo request to identifier 40000 delivered %d", on, got)
			}
		}
	})
	t.Run("UnhairpinnedToInternet", func(t *testing.T) {
		r := newRig(t, func(c *Config) { c.Hairpinning = false; c.UnhairpinnedToInternet = true })
		ipA, firstA, _ := r.bind(tB4A, 1)
		ipB, firstB, _ := r.bind(tB4B, 2)
		r.a.FromAccess(encap(tB4A, tAFTR, udp4(ipA, ipB, firstA, firstB, 64, []byte("q"))))
		r.oneInternet()
	})
	t.Run("IgnoreIPv4HeaderChecksum", func(t *testing.T) {
		for _, on := range []bool{false, true} {
			r := newRig(t, func(c *Config) { c.IgnoreIPv4HeaderChecksum = on })
			ip, first, _ := r.bind(tB4A, 1)
			p := udp4(tRemote, ip, 53, first, 64, []byte("x"))
			p[10] ^= 0xff
			r.a.FromInternet(p)
			if got := len(r.access.take()); (got == 1) != on {
				t.Errorf("on=%v: %d sent", on, got)
			}
		}
	})
}

// The filter language subset and its errors.
func TestCompileFilter(t *testing.T) {
	tcp := tcp4(tRemote, tShare, 443, 4000, 64)
	for _, c := range []struct {
		src  string
		pass bool
	}{
		{"ip", true}, {"ip6", false}, {"len < 0", false}, {"len >= 54", true}, {"len > 54", false},
		{"tcp and dst port 4000", true}, {"udp or src port 4000", false},
		{"not (src host 203.0.113.10 && port 443)", false}, {"dst net 192.0.2.0/24", true},
		{"icmp || icmp6", false},
	} {
		f, err := CompileFilter(c.src, false)
		if err != nil {
			t.Errorf("%q: %v", c.src, err)
			continue
		}
		if f.Pass(tcp) != c.pass {
			t.Errorf("%q passes %v, want %v", c.src, !c.pass, c.pass)
		}
	}
	for _, bad := range []string{"ether host 1", "len <", "(ip", "tcp and", "port x", "host 1.2.3", "ip &"} {
		if _, err := CompileFilter(bad, false); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
	if f, err := CompileFilter("  ", false); f != nil || err != nil || !f.Pass(tcp) {
		t.Errorf("empty filter: %v %v", f, err)
	}
}

// ApplySnabb: Snabb's schema defaults (external MTU 1460, internal 1500)
// and the policies of both sides land in Config.
func TestApplySnabb(t *testing.T) {
	cfg := DefaultConfig()
	text := strings.Replace(snabbConf(softwire(tShare, 1, tB4A, tBR2, 4, 0)),
		"internal-interface { error-rate-limiting { packets 1000; } }",
		"internal-interface { hairpinning false; generate-icmp-errors false; allow-incoming-icmp false; reassembly { max-fragments-per-packet 3; } error-rate-limiting { packets 1000; period 4; } }", 1)
	if err := LoadSnabb(writeConf(t, text), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != tAFTR || cfg.IPv4Addr != tExt4 || cfg.InternetMTU != 1460 || cfg.AccessMTU != 1500 ||
		cfg.Hairpinning || cfg.ICMPv6OnBindingFailure || !cfg.ICMPv4Errors || cfg.AllowIncomingICMPv6 ||
		!cfg.AllowIncomingICMPv4 || cfg.Reassembly6.MaxFragmentsPerPacket != 3 || cfg.ICMPv6Rate != 250 || cfg.ICMPv4Rate != 500 {
		t.Errorf("config %+v", cfg)
	}
	if st := cfg.StaticBindings(); len(st) != 1 || st[0].BR != tBR2 || st[0].PSID.Length != 4 {
		t.Errorf("static %v", st)
	}
	if err := LoadSnabb(writeConf(t, strings.Replace(text, "hairpinning false", "hairpinning maybe", 1)), &cfg); err == nil || !strings.Contains(err.Error(), ":") {
		t.Errorf("bad leaf: %v", err)
	}
	text = strings.Replace(text, "hairpinning false;", "\n  ingress-filter 'ether proto 1';", 1)
	if err := LoadSnabb(writeConf(t, text), &cfg); err == nil || !strings.Contains(err.Error(), "lwaftr.conf:8: softwire-config/internal-interface/ingress-filter:") {
		t.Errorf("bad filter: %v", err)
	}
}

// Static bindings (from a Snabb file) and PCP's dynamic ones share one
// table: the pool hands out no port of an address a static binding uses
// with other PSID parameters, and both carry traffic side by side.
func TestStaticAndPCPShareTable(t *testing.T) {
	first := tPool.Addr() // 192.0.2.8: wholly static (k = 0)
	r := newRig(t, func(c *Config) {
		c.Static = []bindings.Binding{{B4: tB4C, IPv4: first, PSID: mustPSID(t, 0, 0, 0), BR: tBR2}}
	})
	ip, port, _ := r.bind(tB4A, 1)
	if ip == first {
		t.Fatalf("PCP handed out %v, held by a static binding", ip)
	}
	r.a.FromInternet(udp4(tRemote, first, 53, port, 64, []byte("s")))
	r.softwireTo2(r.oneAccess(), tBR2, tB4C)
	r.a.FromInternet(udp4(tRemote, ip, 53, port, 64, []byte("d")))
	r.softwireTo(r.oneAccess(), tB4A)
	if n := len(r.a.Bindings()); n != 2 {
		t.Errorf("%d bindings, want 2", n)
	}
	// A static binding added at run time joins the same table.
	if err := r.a.AddStatic(bindings.Binding{B4: tB4B, IPv4: ip, PSID: mustPSID(t, 0, 5, (port>>11)^1), BR: tAFTR}); err != nil {
		t.Errorf("AddStatic beside a PCP binding: %v", err)
	}
	if err := r.a.AddStatic(bindings.Binding{B4: tB4B, IPv4: ip, PSID: mustPSID(t, 0, 5, port>>11), BR: tAFTR}); err == nil {
		t.Errorf("AddStatic over the PCP binding accepted")
	}
}

// softwireTo2 checks a softwire packet's outer addresses.
func (r *rig) softwireTo2(b []byte, br, b4 netip.Addr) {
	r.t.Helper()
	var outer packet.IPv6
	if _, err := packet.Decapsulate(b, &outer); err != nil || outer.SrcAddr() != br || outer.DstAddr() != b4 {
		r.t.Fatalf("softwire %v → %v (%v), want %v → %v", outer.SrcAddr(), outer.DstAddr(), err, br, b4)
	}
}
