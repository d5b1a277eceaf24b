package nat

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// quoted returns the datagram an ICMP error b carries.
func quoted(b []byte) []byte { return b[header.IPv4(b).HeaderLength()+8:] }

// RFC 5508 REQ-1 and RFC 6346 §5.3.2 / RFC 7596 §8: outbound echo requests
// get an identifier from the port set, the same for every destination
// (REQ-1a); replies come back with the host's identifier. Pings from the
// Internet are not supported.
func TestRFC5508REQ1RFC7596EchoIdentifierFromPortSet(t *testing.T) {
	tb, _ := newTable(t, Config{Filtering: AddressDependent})
	req := echoPacket(lanA, remote1, header.ICMPv4Echo, 1, 7, []byte("ping"))
	mustOut(t, tb, req)
	ext := echoID(req)
	if !testSet.Contains(ext) || srcOf(req).Addr() != pub {
		t.Fatalf("echo request from %v id %d", srcOf(req).Addr(), ext)
	}
	req2 := echoPacket(lanA, remote2, header.ICMPv4Echo, 1, 8, []byte("ping"))
	mustOut(t, tb, req2)
	if echoID(req2) != ext {
		t.Fatalf("identifier %d for the second destination, want %d (REQ-1a)", echoID(req2), ext)
	}
	rep := echoPacket(remote1, pub, header.ICMPv4EchoReply, ext, 7, []byte("ping"))
	mustIn(t, tb, rep)
	if dstOf(rep).Addr() != lanA || echoID(rep) != 1 {
		t.Fatalf("reply to %v id %d", dstOf(rep).Addr(), echoID(rep))
	}
	// Address-dependent filtering: a reply from a host we did not ping.
	if err := tb.Inbound(echoPacket(netip.MustParseAddr("198.51.100.3"), pub, header.ICMPv4EchoReply, ext, 7, nil)); err != ErrFiltered {
		t.Fatalf("reply from a stranger: %v", err)
	}
	if err := tb.Inbound(echoPacket(remote1, pub, header.ICMPv4Echo, ext, 1, nil)); err != ErrUnsupported {
		t.Fatalf("inbound echo request: %v, want ErrUnsupported", err)
	}
	if _, err := tb.Outbound(echoPacket(lanA, remote1, header.ICMPv4EchoReply, 1, 1, nil)); err != ErrUnsupported {
		t.Fatalf("outbound echo reply: %v, want ErrUnsupported", err)
	}
	if _, err := tb.Outbound(echoPacket(lanA, pub, header.ICMPv4Echo, 1, 1, nil)); err != ErrUnsupported {
		t.Fatalf("hairpinned ping: %v, want ErrUnsupported", err)
	}
}

// RFC 5508 REQ-2: the ICMP query timer is at least 60 s.
func TestRFC5508REQ2ICMPQueryTimeout(t *testing.T) {
	tb, clk := newTable(t, Config{ICMPTimeout: time.Second}) // raised to 60 s
	req := echoPacket(lanA, remote1, header.ICMPv4Echo, 1, 1, nil)
	mustOut(t, tb, req)
	clk.Advance(DefaultICMPTimeout - time.Second)
	mustIn(t, tb, echoPacket(remote1, pub, header.ICMPv4EchoReply, echoID(req), 1, nil))
	clk.Advance(DefaultICMPTimeout)
	if err := tb.Inbound(echoPacket(remote1, pub, header.ICMPv4EchoReply, echoID(req), 1, nil)); err != ErrNoMapping {
		t.Fatalf("after 60 s idle: %v", err)
	}
}

// RFC 5508 REQ-4 (and RFC 4787 REQ-12b): a port unreachable about a UDP
// datagram is translated back: embedded headers reverted to what the host
// sent (checksums included), outer destination = the host, type and code
// kept. Quoted in full and truncated to 8 transport octets.
func TestRFC5508REQ4PortUnreachableAboutUDP(t *testing.T) {
	for _, n := range []int{0, 28, 36} {
		tb, _ := newTable(t, Config{})
		orig := udpPacket(ap(lanA, 40000), ap(remote1, 53), []byte("a DNS query, say"))
		out := clone(orig)
		mustOut(t, tb, out)
		q := out
		if n > 0 {
			q = out[:n]
		}
		e := icmpError(remote1, pub, header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, q)
		mustIn(t, tb, e)
		if got := header.IPv4(e).DestinationAddressSlice(); !bytes.Equal(got, lanA.AsSlice()) {
			t.Fatalf("outer destination %v", got)
		}
		if got := header.IPv4(e).SourceAddressSlice(); !bytes.Equal(got, remote1.AsSlice()) {
			t.Fatalf("outer source %v", got)
		}
		ic := header.ICMPv4(e[20:])
		if ic.Type() != header.ICMPv4DstUnreachable || ic.Code() != header.ICMPv4PortUnreachable {
			t.Fatalf("type/code %d/%d changed (REQ-4b)", ic.Type(), ic.Code())
		}
		want := orig
		if n > 0 {
			want = orig[:n]
		}
		if !bytes.Equal(quoted(e), want) {
			t.Fatalf("quote %d: embedded datagram\n% x\nwant what the host sent\n% x", n, quoted(e), want)
		}
	}
}

// RFC 5508 REQ-4 for TCP (RFC 5382 REQ-9): time exceeded from a router on
// the path, quoting 8 transport octets (no TCP checksum), the whole TCP
// header (checksum present, datagram truncated) or the whole datagram.
func TestRFC5508REQ4TimeExceededAboutTCP(t *testing.T) {
	for _, n := range []int{28, 40, 0} {
		tb, _ := newTable(t, Config{Filtering: AddressAndPortDependent})
		orig := tcpPacket(ap(lanA, 50000), ap(remote1, 443), header.TCPFlagSyn, []byte("hello, world"))
		out := clone(orig)
		mustOut(t, tb, out)
		q := out
		if n > 0 {
			q = out[:n]
		}
		e := icmpError(router, pub, header.ICMPv4TimeExceeded, header.ICMPv4TTLExceeded, q)
		mustIn(t, tb, e)
		want := orig
		if n > 0 {
			want = orig[:n]
		}
		if !bytes.Equal(quoted(e), want) {
			t.Fatalf("quote %d: embedded\n% x\nwant\n% x", n, quoted(e), want)
		}
		if dstOf(e).Addr() != lanA {
			t.Fatalf("outer destination %v", dstOf(e).Addr())
		}
	}
}

// RFC 5508 REQ-4 for an ICMP query: a destination unreachable about an echo
// request gets the host's identifier back.
func TestRFC5508REQ4ErrorAboutEchoRequest(t *testing.T) {
	tb, _ := newTable(t, Config{})
	orig := echoPacket(lanA, remote1, header.ICMPv4Echo, 99, 1, []byte("abcdefgh"))
	out := clone(orig)
	mustOut(t, tb, out)
	e := icmpError(router, pub, header.ICMPv4DstUnreachable, header.ICMPv4HostUnreachable, out)
	mustIn(t, tb, e)
	if !bytes.Equal(quoted(e), orig) {
		t.Fatalf("embedded\n% x\nwant\n% x", quoted(e), orig)
	}
}

// RFC 5508 REQ-3: checksums and IP options of ICMP errors; unmatched errors
// dropped (REQ-4 first sentence).
func TestRFC5508REQ3ICMPErrorValidation(t *testing.T) {
	tb, _ := newTable(t, Config{})
	orig := udpPacket(ap(lanA, 40000), ap(remote1, 53), []byte("query"))
	out := clone(orig)
	mustOut(t, tb, out)
	ext := srcOf(out).Port()
	mkErr := func(q []byte) []byte {
		return icmpError(remote1, pub, header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, q)
	}
	refix := func(e []byte) []byte { // recompute the ICMP checksum after tampering
		ic := header.ICMPv4(e[20:])
		ic.SetChecksum(0)
		ic.SetChecksum(^checksum.Checksum(ic, 0))
		return e
	}
	cases := []struct {
		name string
		pkt  []byte
		want error
	}{
		{"icmp-checksum", func() []byte { e := mkErr(out); e[22] ^= 0xff; return e }(), ErrChecksum},
		{"embedded-ip-checksum", func() []byte { e := mkErr(out); e[28+10] ^= 1; return refix(e) }(), ErrChecksum},
		{"embedded-short", mkErr(out[:27]), ErrMalformed},
		{"embedded-no-ports", func() []byte {
			q := clone(out[:24])
			return mkErr(q)
		}(), ErrMalformed},
		{"embedded-not-ours", mkErr(udpPacket(ap(pub2, ext), ap(remote1, 53), nil)), ErrNoMapping},
		{"embedded-unmapped-port", mkErr(udpPacket(ap(pub, ext+1), ap(remote1, 53), nil)), ErrNoMapping},
		{"embedded-other-remote", mkErr(udpPacket(ap(pub, ext), ap(remote2, 53), nil)), ErrNoMapping},
		{"embedded-fragment", func() []byte {
			q := clone(out)
			h := header.IPv4(q)
			h.SetFlagsFragmentOffset(0, 8)
			h.SetChecksum(0)
			h.SetChecksum(^h.CalculateChecksum())
			return mkErr(q)
		}(), ErrFragment},
		{"embedded-gre", func() []byte {
			q := clone(out)
			q[9] = 47
			h := header.IPv4(q)
			h.SetChecksum(0)
			h.SetChecksum(^h.CalculateChecksum())
			return mkErr(q)
		}(), ErrUnsupported},
		{"embedded-echo-reply", mkErr(echoPacket(pub, remote1, header.ICMPv4EchoReply, ext, 1, nil)), ErrUnsupported},
		{"outer-not-to-us", icmpError(remote1, pub2, header.ICMPv4DstUnreachable, 3, out), ErrNotExternal},
		{"source-quench", icmpError(remote1, pub, 4, 0, out), ErrUnsupported},
		{"fragmented-error", func() []byte {
			e := mkErr(out)
			h := header.IPv4(e)
			h.SetFlagsFragmentOffset(header.IPv4FlagMoreFragments, 0)
			h.SetChecksum(0)
			h.SetChecksum(^h.CalculateChecksum())
			return e
		}(), ErrFragment},
	}
	for _, c := range cases {
		orig := clone(c.pkt)
		if err := tb.Inbound(c.pkt); err != c.want {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if !bytes.Equal(orig, c.pkt) {
			t.Errorf("%s: packet modified", c.name)
		}
	}

	// REQ-3c: a wrong embedded transport checksum is not checked; it is
	// reverted like a right one.
	bad := clone(out)
	bad[26] ^= 0x55
	e := mkErr(bad)
	if err := tb.Inbound(e); err != nil {
		t.Fatalf("wrong embedded UDP checksum: %v, want translated (REQ-3c)", err)
	}
	q := quoted(e)
	if !bytes.Equal(q[12:16], lanA.AsSlice()) || binary.BigEndian.Uint16(q[20:]) != 40000 {
		t.Fatalf("embedded source not reverted: % x", q[:24])
	}
}

// RFC 5508 REQ-3b: the embedded header may carry IP options; the transport
// header is found past them (and the outer packet may have them too).
func TestRFC5508REQ3bEmbeddedIPOptions(t *testing.T) {
	tb, _ := newTable(t, Config{})
	plain := udpPacket(ap(lanA, 40000), ap(remote1, 53), []byte("opts"))
	// Insert 4 octets of NOP options: IHL 6.
	orig := make([]byte, len(plain)+4)
	copy(orig, plain[:20])
	copy(orig[20:24], []byte{1, 1, 1, 0}) // NOP NOP NOP EOL
	copy(orig[24:], plain[20:])
	h := header.IPv4(orig)
	h.SetHeaderLength(24)
	h.SetTotalLength(uint16(len(orig)))
	h.SetChecksum(0)
	h.SetChecksum(^h.CalculateChecksum())
	out := clone(orig)
	mustOut(t, tb, out)
	if srcOf(out).Addr() != pub || !testSet.Contains(srcOf(out).Port()) {
		t.Fatalf("with options: %v", srcOf(out))
	}
	e := icmpError(remote1, pub, header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, out)
	mustIn(t, tb, e)
	if !bytes.Equal(quoted(e), orig) {
		t.Fatalf("embedded\n% x\nwant\n% x", quoted(e), orig)
	}
}

// RFC 4787 REQ-12 and RFC 5508 REQ-6: an ICMP error neither terminates nor
// refreshes the mapping it is about.
func TestRFC4787REQ12RFC5508REQ6ICMPErrorNeitherTerminatesNorRefreshes(t *testing.T) {
	tb, clk := newTable(t, Config{})
	req := echoPacket(lanA, remote1, header.ICMPv4Echo, 5, 1, nil)
	mustOut(t, tb, req)
	ext := echoID(req)
	clk.Advance(50 * time.Second)
	mustIn(t, tb, icmpError(router, pub, header.ICMPv4DstUnreachable, header.ICMPv4HostUnreachable, req))
	clk.Advance(5 * time.Second)
	mustIn(t, tb, echoPacket(remote1, pub, header.ICMPv4EchoReply, ext, 1, nil)) // not terminated
	// The reply refreshed the session at 55 s; the error at 50 s did not.
	clk.Advance(DefaultICMPTimeout - time.Second)
	tb.Expire()
	if tb.Sessions() != 1 {
		t.Fatal("session gone early")
	}
	clk.Advance(time.Second)
	tb.Expire()
	if tb.Sessions() != 0 {
		t.Fatal("session refreshed by something")
	}

	// UDP: a port unreachable does not end the mapping either.
	u := udpPacket(ap(lanA, 40000), ap(remote1, 53), nil)
	mustOut(t, tb, u)
	mustIn(t, tb, icmpError(remote1, pub, header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, u))
	mustIn(t, tb, udpPacket(ap(remote1, 53), srcOf(u), nil))
}

// RFC 5508 REQ-5: an ICMP error from the LAN about a datagram that came in
// is translated: embedded destination back to the public endpoint, outer
// source = the public address (REQ-5c), whether the host or a LAN router
// sends it.
func TestRFC5508REQ5OutboundICMPError(t *testing.T) {
	for _, from := range []struct {
		addr netip.Addr
		typ  header.ICMPv4Type
		code header.ICMPv4Code
	}{
		{lanA, header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable},
		{lanR, header.ICMPv4TimeExceeded, header.ICMPv4TTLExceeded},
	} {
		tb, _ := newTable(t, Config{})
		ext, err := tb.AddExplicit(protoUDP, ap(lanA, 40000), 0, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		sent := udpPacket(ap(remote1, 7000), ap(pub, ext), []byte("unsolicited"))
		in := clone(sent)
		mustIn(t, tb, in)
		e := icmpError(from.addr, remote1, from.typ, from.code, in)
		hp, err := tb.Outbound(e)
		if err != nil || hp {
			t.Fatalf("Outbound = %v, %v", hp, err)
		}
		mustValid(t, e)
		if srcOf(e).Addr() != pub || dstOf(e).Addr() != remote1 {
			t.Fatalf("outer %v → %v", srcOf(e).Addr(), dstOf(e).Addr())
		}
		if !bytes.Equal(quoted(e), sent) {
			t.Fatalf("embedded\n% x\nwant what the remote sent\n% x", quoted(e), sent)
		}
		// About a packet that never came in: dropped.
		if _, err := tb.Outbound(icmpError(lanA, remote1, header.ICMPv4DstUnreachable, 3,
			udpPacket(ap(remote2, 7000), ap(lanA, 40000), nil))); err != ErrNoMapping {
			t.Fatalf("unmatched error: %v", err)
		}
	}
}

// RFC 5508 REQ-7: a hairpinned ICMP error goes back to the LAN host that
// sent the quoted datagram, outer destination = that host (REQ-7a), and
// quotes exactly what it sent.
func TestRFC5508REQ7HairpinnedICMPError(t *testing.T) {
	tb, _ := newTable(t, Config{})
	extB, err := tb.AddExplicit(protoUDP, ap(lanB, 9000), 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sent := udpPacket(ap(lanA, 40000), ap(pub, extB), []byte("to B via the public address"))
	h := clone(sent)
	if hp, err := tb.Outbound(h); err != nil || !hp {
		t.Fatalf("hairpin: %v, %v", hp, err)
	}
	// B has nothing on 9000 after all: port unreachable to the sender it saw.
	e := icmpError(lanB, srcOf(h).Addr(), header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, h)
	hp, err := tb.Outbound(e)
	if err != nil || !hp {
		t.Fatalf("error: %v, %v; want hairpinned", hp, err)
	}
	mustValid(t, e)
	if srcOf(e).Addr() != pub || dstOf(e).Addr() != lanA {
		t.Fatalf("outer %v → %v", srcOf(e).Addr(), dstOf(e).Addr())
	}
	if !bytes.Equal(quoted(e), sent) {
		t.Fatalf("embedded\n% x\nwant what A sent\n% x", quoted(e), sent)
	}
}
