package packet

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz/FuzzParsePackets from fuzzSeeds")

// fuzzSeeds are the packets of the seed corpus: valid IPv4 TCP, UDP and ICMP
// (echo and errors), valid softwire packets with and without extension
// headers, and truncated and corrupted ones.
func fuzzSeeds() map[string][]byte {
	tcp := mkIPv4(0, 64, ProtoTCP, hostV4, peerV4, mkTCP(40000, 443))
	udp := AppendUDP4(nil, 0, hostV4, peerV4, 40001, 53, 64, []byte("query"))
	echo := mkIPv4(0, 64, ProtoICMP, peerV4, hostV4, mkICMPv4(ICMPv4EchoRequest, 0, 0x1234_0001, []byte("ping")))
	icmpErr := ICMPv4Error(ICMPv4DstUnreachable, 3, 0, routerV4, hostV4, 64, udp, MaxICMPv4Error)
	icmpErrTrunc := ICMPv4Error(ICMPv4TimeExceeded, 0, 0, routerV4, hostV4, 64, tcp[:IPv4HeaderLen+2], MaxICMPv4Error)
	opts := mkIPv4Opts(ProtoUDP, hostV4, peerV4, mkUDP(1, 2, nil))
	frag := withFrag(bytes.Clone(udp), false, 3)
	sw := func(inner []byte) []byte { return Encapsulate(inner, 0, b4V6, aftrV6, 64) }
	badCsum := bytes.Clone(tcp)
	badCsum[10] ^= 0xff
	return map[string][]byte{
		"ipv4-tcp":            tcp,
		"ipv4-udp":            udp,
		"ipv4-udp-zero-csum":  func() []byte { b := bytes.Clone(udp); b[26], b[27] = 0, 0; return b }(),
		"ipv4-icmp-echo":      echo,
		"ipv4-icmp-error":     icmpErr,
		"ipv4-icmp-error-cut": icmpErrTrunc,
		"ipv4-options":        opts,
		"ipv4-fragment":       frag,
		"ipv4-bad-csum":       badCsum,
		"ipv4-truncated":      tcp[:IPv4HeaderLen-1],
		"4in6-tcp":            sw(tcp),
		"4in6-udp":            sw(udp),
		"4in6-icmp-error":     sw(icmpErr),
		"4in6-ext-headers": mkIPv6(0xb8, ipv6HopByHop, 64, b4V6, aftrV6,
			[][]byte{hopByHop(ipv6Routing), routingHdr(ipv6DestOpts), tunnelEncapLimit(ProtoIPIP)}, echo),
		"4in6-fragment":  mkIPv6(0, ipv6Fragment, 64, b4V6, aftrV6, [][]byte{fragmentHdr(ProtoIPIP)}, tcp),
		"4in6-ext-short": mkIPv6(0, ipv6HopByHop, 64, b4V6, aftrV6, nil, []byte{ProtoIPIP, 3, 1, 0}),
		"4in6-truncated": sw(tcp)[:IPv6HeaderLen+IPv4HeaderLen-1],
		"4in6-inner-cut": func() []byte { b := sw(tcp); return b[:len(b)-1] }(),
		"icmpv6-error":   ICMPv6Error(ICMPv6DstUnreachable, ICMPv6CodeSourcePolicy, 0, aftrV6, b4V6, 64, sw(tcp), MaxICMPv6Error),
		"icmpv6-echo-hbh": mkIPv6(0, ipv6HopByHop, 64, b4V6, aftrV6, [][]byte{hopByHop(ProtoICMPv6)},
			ICMPv6Echo(ICMPv6EchoRequest, b4V6, aftrV6, 64, 7, []byte("x"))[IPv6HeaderLen:]),
		"empty": {},
	}
}

// TestWriteFuzzCorpus regenerates the seed corpus from fuzzSeeds:
// go test ./stack/packet/ -run TestWriteFuzzCorpus -update-corpus
func TestWriteFuzzCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParsePackets")
	for name, b := range fuzzSeeds() {
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(b)))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzParsePackets feeds arbitrary bytes to every parser. None may panic or
// write to its input; what parses must be self-consistent; and a softwire
// packet that decapsulates must survive re-encapsulation (RFC 2473 §3) with
// the same inner bytes, with and without headroom. Each input is also tried
// with its checksums repaired, so the fuzzer reaches past them.
func FuzzParsePackets(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		checkParsers(t, b)
		if c := fixChecksums(b); !bytes.Equal(c, b) {
			checkParsers(t, c)
		}
	})
}

// fixChecksums returns a copy of b with the IPv4 header checksum, or the
// inner IPv4 header checksum of a softwire packet, or the ICMPv6 checksum
// made valid where the headers can be found.
func fixChecksums(b []byte) []byte {
	c := bytes.Clone(b)
	fix4 := func(v []byte) {
		if len(v) >= IPv4HeaderLen && v[0]>>4 == 4 {
			if ihl := int(v[0]&0xf) * 4; ihl >= IPv4HeaderLen && ihl <= len(v) {
				SetIPv4HeaderChecksum(v)
			}
		}
	}
	fix4(c)
	var p IPv6
	if ParseIPv6(c, &p) == nil {
		switch {
		case p.NextHeader == ProtoIPIP:
			fix4(p.Payload)
		case p.NextHeader == ProtoICMPv6 && len(p.Payload) >= 8:
			m := p.Payload
			m[2], m[3] = 0, 0
			cs := ^onesSum(pseudoHdr6(p.Src, p.Dst, ProtoICMPv6, len(m)), m)
			m[2], m[3] = byte(cs>>8), byte(cs)
		}
	}
	return c
}

// checkParsers runs every parser on b and checks what they return.
func checkParsers(t *testing.T, b []byte) {
	t.Helper()
	orig := bytes.Clone(b)

	if p, err := ParseIPv4(b); err == nil {
		if len(p) != p.TotalLen() || p.HeaderLen() < IPv4HeaderLen || p.HeaderLen() > len(p) {
			t.Fatalf("ParseIPv4 returned %d octets, total length %d, IHL %d", len(p), p.TotalLen(), p.HeaderLen())
		}
		fl, err := p.Ports()
		if fl.Proto != p.Protocol() {
			t.Fatalf("Flow.Proto %d, packet protocol %d", fl.Proto, p.Protocol())
		}
		if err == nil && fl.ICMPError && p.Protocol() != ProtoICMP {
			t.Fatal("ICMP error flow from a non-ICMP packet")
		}
		var u UDP
		if err := ParseUDP4(p, &u); err == nil {
			if UDPHeaderLen+len(u.Data) > len(p.Payload()) {
				t.Fatalf("UDP data %d octets in a %d-octet payload", len(u.Data), len(p.Payload()))
			}
		}
		// Router rewrites keep the header valid.
		c := IPv4(bytes.Clone(p))
		if c.DecTTL() == nil {
			if _, err := ParseIPv4(c); err != nil {
				t.Fatalf("after DecTTL: %v", err)
			}
		}
		c.SetTOS(^c.TOS())
		if _, err := ParseIPv4(c); err != nil {
			t.Fatalf("after SetTOS: %v", err)
		}
		e := ICMPv4Error(ICMPv4TimeExceeded, 0, 0, routerV4, p.Src(), 64, p, MaxICMPv4Error)
		if ep, err := ParseIPv4(e); err != nil || len(ep) > MaxICMPv4Error {
			t.Fatalf("ICMPv4Error about it: %d octets, %v", len(e), err)
		}
	}

	var p6 IPv6
	if err := ParseIPv6(b, &p6); err == nil {
		if len(p6.Packet) > len(b) || len(p6.Payload) > len(p6.Packet)-IPv6HeaderLen {
			t.Fatalf("ParseIPv6: packet %d payload %d of %d", len(p6.Packet), len(p6.Payload), len(b))
		}
		var m ICMPv6
		_ = ParseICMPv6(&p6, &m)
		e := ICMPv6Error(ICMPv6ParamProblem, 0, 0, aftrV6, p6.Src, 64, p6.Packet, MaxICMPv6Error)
		var ep IPv6
		if err := ParseIPv6(e, &ep); err != nil || len(e) > MaxICMPv6Error {
			t.Fatalf("ICMPv6Error about it: %d octets, %v", len(e), err)
		}
		if err := ParseICMPv6(&ep, &m); err != nil {
			t.Fatalf("ICMPv6Error about it does not verify: %v", err)
		}
	}

	var outer IPv6
	if inner, err := Decapsulate(b, &outer); err == nil {
		for _, off := range []int{0, IPv6HeaderLen} {
			buf := append(make([]byte, off), inner...)
			re := Encapsulate(buf, off, outer.Src, outer.Dst, outer.HopLimit)
			var o2 IPv6
			in2, err := Decapsulate(re, &o2)
			if err != nil {
				t.Fatalf("off %d: re-encapsulated packet does not decapsulate: %v", off, err)
			}
			if !bytes.Equal(in2, inner) {
				t.Fatalf("off %d: inner changed:\n%x\n%x", off, []byte(in2), []byte(inner))
			}
			if o2.Src != outer.Src || o2.Dst != outer.Dst || o2.HopLimit != outer.HopLimit ||
				o2.TrafficClass != inner.TOS() || o2.NextHeader != ProtoIPIP {
				t.Fatalf("off %d: outer header %+v", off, o2)
			}
		}
	}

	if !bytes.Equal(b, orig) {
		t.Fatal("a parser wrote to its input")
	}
}
