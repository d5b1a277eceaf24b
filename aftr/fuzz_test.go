package aftr

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/stack/frag"
	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// fuzzRig is an AFTR with every optional behaviour on and two bindings:
// B4 A and B4 B on the pool's first address, ports 2048-4095 and 4096-6143.
func fuzzRig(t testing.TB) *rig {
	t.Helper()
	r := newRig(t, func(c *Config) {
		c.IPv4Addr = tSelf4
		c.ICMPv4OnNoBinding = true
	})
	for _, b4 := range []netip.Addr{tB4A, tB4B} {
		if _, err := r.a.pool.Allocate(b4, bindings.Request{Size: 65535, Lifetime: time.Hour}); err != nil {
			t.Fatalf("Allocate(%v): %v", b4, err)
		}
	}
	return r
}

// softwireRaw is data as the payload of a softwire packet from b4 to the
// AFTR, whatever data is.
func softwireRaw(b4 netip.Addr, data []byte) []byte {
	data = data[:min(len(data), 0xffff)]
	b := make([]byte, packet.IPv6HeaderLen+len(data))
	packet.PutIPv6Header(b, 0, len(data), packet.ProtoIPIP, 64, a16(b4), a16(tAFTR))
	copy(b[packet.IPv6HeaderLen:], data)
	return b
}

// FuzzFromAccess feeds arbitrary bytes to FromAccess (as they are, and as
// the inner packet of a bound B4's softwire) and to FromInternet. The AFTR
// must not panic, and everything it sends must be well formed: on the
// access link an IPv6 packet from its address to one node, carrying a valid
// IPv4 packet (a PCP reply parses) or a checksummed ICMPv6 message; on the
// Internet link a valid IPv4 packet never from 192.0.0.0/29 and never to a
// B4's address (RFC 7596 §6.2: that is hairpinned), and the AFTR's own
// ICMPv4 errors checksummed. And the AFTR never forwards to the Internet a
// packet whose source is not bound to the B4 that sent it (RFC 7596 §5.1:
// the outer source and the inner source address and port must match a
// binding): whatever comes from the access side leaves from the sender's
// IPv4 address and port set, or is the AFTR's own error; nothing from the
// Internet goes back out but the AFTR's own errors.
func FuzzFromAccess(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		r := fuzzRig(t)
		// Fragments (over AccessMTU) are checked once reassembled.
		re := frag.NewReassembler6(frag.Config{})
		var raw packet.IPv6
		rawSrc := netip.Addr{} // the sender of data as a packet, if it is one
		if packet.ParseIPv6(data, &raw) == nil {
			rawSrc = raw.SrcAddr()
		}
		for _, in := range []struct {
			send   func([]byte)
			pkt    []byte
			sender netip.Addr // the B4 whose traffic it is; zero: the Internet
		}{
			{r.a.FromAccess, bytes.Clone(data), rawSrc},
			{r.a.FromAccess, softwireRaw(tB4A, data), tB4A},
			{r.a.FromInternet, bytes.Clone(data), netip.Addr{}},
		} {
			before := r.a.Bindings()
			in.send(in.pkt)
			checkOnlyOwnBindings(t, r, before, in.sender)
			for _, p := range r.access.take() {
				if len(p) > r.cfg.AccessMTU {
					t.Fatalf("access: %d octets over the MTU", len(p))
				}
				whole, err := re.Add(p)
				if err != nil {
					t.Fatalf("access: fragment: %v", err)
				}
				if whole != nil {
					checkAccessOut(t, r, whole)
				}
			}
			for _, p := range r.internet.take() {
				checkInternetOut(t, r, p)
				checkBoundSource(t, r, p, in.sender)
			}
		}
	})
}

// checkOnlyOwnBindings fails if handling one packet from sender (zero: the
// Internet) obtained, changed or deleted a binding of another B4: no B4
// ever touches another's binding (DESIGN.md). Provisioning systems, which
// may manage any B4's binding (PROTOCOL.md §8 item 4), are exempt.
func checkOnlyOwnBindings(t *testing.T, r *rig, before []bindings.Binding, sender netip.Addr) {
	t.Helper()
	if sender.IsValid() && r.a.isProvisioner(sender) {
		return
	}
	type key struct {
		b4  netip.Addr
		set uint16
	}
	was := map[key]bindings.Binding{}
	for _, b := range before {
		was[key{b.B4, b.Set}] = b
	}
	now := map[key]bindings.Binding{}
	for _, b := range r.a.Bindings() {
		now[key{b.B4, b.Set}] = b
	}
	for k, b := range now {
		if k.b4 == sender {
			continue
		}
		if old, ok := was[k]; !ok || old.String() != b.String() || !old.Expires.Equal(b.Expires) {
			t.Fatalf("a packet from %v obtained or changed %v's binding: %v (was %v)", sender, k.b4, b, old)
		}
	}
	for k := range was {
		if _, ok := now[k]; !ok && k.b4 != sender {
			t.Fatalf("a packet from %v deleted %v's binding %v", sender, k.b4, was[k])
		}
	}
}

// checkBoundSource fails unless p, sent to the Internet on sender's
// behalf, leaves from one of sender's bindings: its address, and for TCP,
// UDP and ICMP echo (RFC 7596 §8.1) a port or identifier of its set; or
// unless it is the AFTR's own ICMPv4 error.
func checkBoundSource(t *testing.T, r *rig, p []byte, sender netip.Addr) {
	t.Helper()
	ip4 := packet.IPv4(p)
	if ip4.SrcAddr() == tSelf4 {
		return // the AFTR's own (checkInternetOut checked it)
	}
	if !sender.IsValid() {
		t.Fatalf("internet: a packet from %v forwarded from the Internet side", ip4.SrcAddr())
	}
	var port uint16
	hasPort := false
	if l4 := ip4.Payload(); ip4.FragOffset() == 0 {
		switch ip4.Protocol() {
		case packet.ProtoTCP, packet.ProtoUDP:
			if len(l4) >= 2 {
				port, hasPort = binary.BigEndian.Uint16(l4), true
			}
		case packet.ProtoICMP:
			if len(l4) >= 6 && (l4[0] == packet.ICMPv4EchoRequest || l4[0] == packet.ICMPv4EchoReply) {
				port, hasPort = binary.BigEndian.Uint16(l4[4:]), true
			}
		}
	}
	for _, b := range r.a.Bindings() {
		if b.B4 == sender && b.IPv4 == ip4.SrcAddr() && (!hasPort || b.Ports().Contains(port)) {
			return
		}
	}
	t.Fatalf("internet: %v port %d (checked %v) left for B4 %v, which holds no such binding: % x", ip4.SrcAddr(), port, hasPort, sender, p)
}

func checkAccessOut(t *testing.T, r *rig, p []byte) {
	t.Helper()
	var o packet.IPv6
	if err := packet.ParseIPv6(p, &o); err != nil {
		t.Fatalf("access: %v: % x", err, p)
	}
	if len(o.Packet) != len(p) || o.SrcAddr() != tAFTR {
		t.Fatalf("access: %d of %d octets from %v", len(o.Packet), len(p), o.SrcAddr())
	}
	if d := o.DstAddr(); d.IsUnspecified() || d.IsMulticast() {
		t.Fatalf("access: to %v", d)
	}
	switch o.NextHeader {
	case packet.ProtoIPIP:
		ip4, err := packet.ParseIPv4(o.Payload)
		if err != nil || len(ip4) != len(o.Payload) {
			t.Fatalf("access: inner IPv4 (%v), %d of %d octets: % x", err, len(ip4), len(o.Payload), p)
		}
		if o.TrafficClass != ip4.TOS() {
			t.Fatalf("access: traffic class %#x, TOS %#x", o.TrafficClass, ip4.TOS())
		}
		// A PCP reply (what the Internet sends a B4 goes to a pool
		// address, and may claim any source).
		if ip4.SrcAddr() == tAFTR4 && ip4.Protocol() == packet.ProtoUDP && !tPool.Contains(ip4.DstAddr()) {
			var u packet.UDP
			if err := packet.ParseUDP4(ip4, &u); err != nil || u.SrcPort != pcp.ServerPort {
				t.Fatalf("access: PCP reply UDP (%v) from port %d", err, u.SrcPort)
			}
			if m, err := pcp.Parse(u.Data); err != nil || !m.Response {
				t.Fatalf("access: PCP reply (%v): % x", err, u.Data)
			}
		}
	case packet.ProtoUDP:
		// A PCP answer over plain IPv6: only ever to a provisioning system.
		var u packet.UDP
		if err := packet.ParseUDP6(&o, &u); err != nil || u.SrcPort != pcp.ServerPort || o.DstAddr() != tProv {
			t.Fatalf("access: UDP (%v) from port %d to %v", err, u.SrcPort, o.DstAddr())
		}
		if m, err := pcp.Parse(u.Data); err != nil || !m.Response {
			t.Fatalf("access: PCP answer (%v): % x", err, u.Data)
		}
	case packet.ProtoICMPv6:
		var m packet.ICMPv6
		if err := packet.ParseICMPv6(&o, &m); err != nil {
			t.Fatalf("access: ICMPv6: %v", err)
		}
	default:
		t.Fatalf("access: next header %d", o.NextHeader)
	}
}

func checkInternetOut(t *testing.T, r *rig, p []byte) {
	t.Helper()
	ip4, err := packet.ParseIPv4(p)
	if err != nil || len(ip4) != len(p) {
		t.Fatalf("internet: %v, %d of %d octets: % x", err, len(ip4), len(p), p)
	}
	wk := netip.MustParsePrefix("192.0.0.0/29")
	if wk.Contains(ip4.SrcAddr()) {
		t.Fatalf("internet: from %v", ip4.SrcAddr())
	}
	if tPool.Contains(ip4.DstAddr()) {
		t.Fatalf("internet: to a B4 address %v", ip4.DstAddr())
	}
	if ip4.SrcAddr() == tSelf4 {
		checkICMPv4(t, ip4)
	}
}

// checkICMPv4 checks an ICMPv4 error the AFTR built.
func checkICMPv4(t *testing.T, ip4 packet.IPv4) {
	t.Helper()
	m := ip4.Payload()
	if ip4.Protocol() != packet.ProtoICMP || len(m) < 8 || checksum.Checksum(m, 0) != 0xffff {
		t.Fatalf("bad ICMPv4 from the AFTR: % x", ip4)
	}
	if m[0] == packet.ICMPv4EchoReply { // the echo responder
		return
	}
	if !packet.IsICMPv4Error(m[0]) || len(ip4) > packet.MaxICMPv4Error {
		t.Fatalf("ICMPv4 type %d, %d octets", m[0], len(ip4))
	}
}
