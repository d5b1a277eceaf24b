package nat

import (
	"bytes"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lw4o6/lw4o6/stack/portset"
)

// RFC 4787 REQ-1: one external port per internal endpoint, whatever the
// destination; the source becomes the public address and a port of the set.
func TestRFC4787REQ1EndpointIndependentMapping(t *testing.T) {
	tb, _ := newTable(t, Config{})
	a := udpPacket(ap(lanA, 40000), ap(remote1, 53), []byte("query one"))
	b := udpPacket(ap(lanA, 40000), ap(remote2, 5353), []byte("query two"))
	mustOut(t, tb, a)
	mustOut(t, tb, b)
	sa, sb := srcOf(a), srcOf(b)
	if sa.Addr() != pub || sb.Addr() != pub {
		t.Fatalf("sources %v, %v; want the public address %v", sa, sb, pub)
	}
	if sa.Port() != sb.Port() {
		t.Fatalf("external ports %d and %d differ for one internal endpoint", sa.Port(), sb.Port())
	}
	if !testSet.Contains(sa.Port()) {
		t.Fatalf("external port %d not in the set %v", sa.Port(), testSet)
	}
	if dstOf(a) != ap(remote1, 53) || dstOf(b) != ap(remote2, 5353) {
		t.Fatalf("destinations changed: %v %v", dstOf(a), dstOf(b))
	}
	// A second internal endpoint gets another port (REQ-3: no overloading).
	c := udpPacket(ap(lanB, 40000), ap(remote1, 53), nil)
	mustOut(t, tb, c)
	if srcOf(c).Port() == sa.Port() {
		t.Fatalf("two internal endpoints share external port %d", sa.Port())
	}
	if st := tb.Stats(); st.TranslatedOut != 3 || st.UDPSessions != 3 || st.Mappings != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// RFC 5382 REQ-1: the same for TCP.
func TestRFC5382REQ1TCPEndpointIndependentMapping(t *testing.T) {
	tb, _ := newTable(t, Config{})
	a := tcpPacket(ap(lanA, 50000), ap(remote1, 443), header.TCPFlagSyn, nil)
	b := tcpPacket(ap(lanA, 50000), ap(remote2, 80), header.TCPFlagSyn, nil)
	mustOut(t, tb, a)
	mustOut(t, tb, b)
	if srcOf(a) != srcOf(b) || srcOf(a).Addr() != pub || !testSet.Contains(srcOf(a).Port()) {
		t.Fatalf("sources %v, %v", srcOf(a), srcOf(b))
	}
}

// RFC 4787 REQ-3 (port preservation, a MAY) and REQ-4 (parity, RECOMMENDED).
func TestRFC4787REQ3PortPreservationAndREQ4Parity(t *testing.T) {
	tb, _ := newTable(t, Config{})
	in := udpPacket(ap(lanA, 4100), ap(remote1, 53), nil)
	mustOut(t, tb, in)
	if got := srcOf(in).Port(); got != 4100 {
		t.Fatalf("in-set internal port 4100 mapped to %d, want preserved", got)
	}
	// Same internal port from another host: taken, so another port of the set.
	other := udpPacket(ap(lanB, 4100), ap(remote1, 53), nil)
	mustOut(t, tb, other)
	if got := srcOf(other).Port(); got == 4100 || !testSet.Contains(got) || got&1 != 0 {
		t.Fatalf("port %d: want a free even port of the set", got)
	}
	for _, p := range []uint16{40001, 40002, 1025, 65535} {
		b := udpPacket(ap(lanA, p), ap(remote1, 53), nil)
		mustOut(t, tb, b)
		got := srcOf(b).Port()
		if !testSet.Contains(got) {
			t.Fatalf("internal port %d mapped to %d, outside the set", p, got)
		}
		if got&1 != p&1 {
			t.Errorf("internal port %d mapped to %d: parity not preserved", p, got)
		}
	}
}

// RFC 4787 §4.1: each protocol has its own port space, so the same internal
// port on TCP, UDP and as an ICMP identifier is preserved three times.
func TestSeparatePortSpacesPerProtocol(t *testing.T) {
	tb, _ := newTable(t, Config{})
	u := udpPacket(ap(lanA, 4200), ap(remote1, 53), nil)
	c := tcpPacket(ap(lanB, 4200), ap(remote1, 80), header.TCPFlagSyn, nil)
	e := echoPacket(lanR, remote1, header.ICMPv4Echo, 4200, 1, nil)
	mustOut(t, tb, u)
	mustOut(t, tb, c)
	mustOut(t, tb, e)
	if srcOf(u).Port() != 4200 || srcOf(c).Port() != 4200 || echoID(e) != 4200 {
		t.Fatalf("ports %d %d %d, want 4200 each", srcOf(u).Port(), srcOf(c).Port(), echoID(e))
	}
}

// RFC 4787 REQ-8 and RFC 5382 REQ-3: the three filtering behaviours, for UDP
// and TCP. Inbound traffic that passes goes back to the internal endpoint.
func TestRFC4787REQ8RFC5382REQ3Filtering(t *testing.T) {
	type probe struct {
		from netip.AddrPort
		pass [3]bool // EIF, ADF, APDF
	}
	probes := []probe{
		{ap(remote1, 7000), [3]bool{true, true, true}},   // the endpoint we sent to
		{ap(remote1, 7001), [3]bool{true, true, false}},  // same address, other port
		{ap(remote2, 7000), [3]bool{true, false, false}}, // other address
	}
	for _, f := range []Filtering{EndpointIndependent, AddressDependent, AddressAndPortDependent} {
		for _, proto := range []uint8{protoUDP, protoTCP} {
			t.Run(f.String()+map[uint8]string{protoUDP: "/udp", protoTCP: "/tcp"}[proto], func(t *testing.T) {
				tb, _ := newTable(t, Config{Filtering: f})
				mk := func(src, dst netip.AddrPort) []byte {
					if proto == protoUDP {
						return udpPacket(src, dst, []byte("x"))
					}
					return tcpPacket(src, dst, header.TCPFlagAck, []byte("x"))
				}
				out := mk(ap(lanA, 33333), ap(remote1, 7000))
				mustOut(t, tb, out)
				ext := srcOf(out).Port()
				var filtered uint64
				for _, p := range probes {
					in := mk(p.from, ap(pub, ext))
					orig := clone(in)
					err := tb.Inbound(in)
					want := p.pass[f]
					if want {
						if err != nil {
							t.Fatalf("from %v: %v, want translated", p.from, err)
						}
						mustValid(t, in)
						if dstOf(in) != ap(lanA, 33333) || srcOf(in) != p.from {
							t.Fatalf("from %v: translated to %v → %v", p.from, srcOf(in), dstOf(in))
						}
					} else {
						filtered++
						if err != ErrFiltered {
							t.Fatalf("from %v: %v, want ErrFiltered", p.from, err)
						}
						if !bytes.Equal(in, orig) {
							t.Fatal("filtered packet was modified")
						}
					}
				}
				if got := tb.Stats().DropIn.Filtered; got != filtered {
					t.Fatalf("Filtered counter %d, want %d", got, filtered)
				}
				// No mapping at all: never passes.
				if err := tb.Inbound(mk(ap(remote1, 7000), ap(pub, ext+1))); err != ErrNoMapping {
					t.Fatalf("unmapped port: %v, want ErrNoMapping", err)
				}
			})
		}
	}
}

// RFC 4787 REQ-5: a UDP mapping lives at least 2 min (default 5 min,
// REQ-5c); REQ-6: outbound packets refresh it; REQ-6a: so do inbound ones
// here.
func TestRFC4787REQ5REQ6UDPTimeoutAndRefresh(t *testing.T) {
	tb, clk := newTable(t, Config{})
	out := udpPacket(ap(lanA, 40000), ap(remote1, 53), nil)
	mustOut(t, tb, out)
	ext := srcOf(out).Port()
	reply := func() error { return tb.Inbound(udpPacket(ap(remote1, 53), ap(pub, ext), nil)) }

	clk.Advance(DefaultUDPTimeout - time.Second)
	if err := reply(); err != nil { // also refreshes (REQ-6a)
		t.Fatalf("before the timeout: %v", err)
	}
	clk.Advance(DefaultUDPTimeout - time.Second)
	mustOut(t, tb, udpPacket(ap(lanA, 40000), ap(remote1, 53), nil)) // refresh (REQ-6)
	clk.Advance(DefaultUDPTimeout - time.Second)
	if err := reply(); err != nil {
		t.Fatalf("after refreshes: %v", err)
	}
	clk.Advance(DefaultUDPTimeout)
	if err := reply(); err != ErrNoMapping {
		t.Fatalf("after the timeout: %v, want ErrNoMapping", err)
	}

	// A configured timeout below the 2-minute minimum is raised to it.
	tb2, clk2 := newTable(t, Config{UDPTimeout: 10 * time.Second})
	out = udpPacket(ap(lanA, 40000), ap(remote1, 53), nil)
	mustOut(t, tb2, out)
	clk2.Advance(MinUDPTimeout - time.Second)
	if err := tb2.Inbound(udpPacket(ap(remote1, 53), ap(pub, srcOf(out).Port()), nil)); err != nil {
		t.Fatalf("UDPTimeout 10s must act as %v: %v", MinUDPTimeout, err)
	}
}

// RFC 5382 REQ-5: transitory timeout (4 min) until SYNs were seen both ways,
// established (2 h 4 min) after, transitory again after FINs both ways or a
// RST.
func TestRFC5382REQ5TCPTimeouts(t *testing.T) {
	const (
		syn = header.TCPFlagSyn
		ack = header.TCPFlagAck
		fin = header.TCPFlagFin | header.TCPFlagAck
		rst = header.TCPFlagRst
	)
	lan, rem := ap(lanA, 50000), ap(remote1, 443)
	type step struct {
		out   bool
		flags header.TCPFlags
	}
	cases := []struct {
		name  string
		steps []step
		life  time.Duration // how long the session lives after the last step
	}{
		{"syn-only", []step{{true, syn}}, DefaultTCPTransitoryTimeout},
		{"established", []step{{true, syn}, {false, syn | ack}, {true, ack}}, DefaultTCPEstablishedTimeout},
		{"simultaneous-open", []step{{true, syn}, {false, syn}}, DefaultTCPEstablishedTimeout}, // REQ-2a
		{"half-closed", []step{{true, syn}, {false, syn | ack}, {true, fin}}, DefaultTCPEstablishedTimeout},
		{"closed", []step{{true, syn}, {false, syn | ack}, {true, fin}, {false, fin}, {true, ack}}, DefaultTCPTransitoryTimeout},
		{"reset", []step{{true, syn}, {false, syn | ack}, {false, rst}}, DefaultTCPTransitoryTimeout},
		{"reopened", []step{{true, syn}, {false, syn | ack}, {false, rst}, {true, syn}, {false, syn | ack}}, DefaultTCPEstablishedTimeout},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb, clk := newTable(t, Config{Filtering: AddressAndPortDependent})
			var ext uint16
			for _, s := range c.steps {
				if s.out {
					p := tcpPacket(lan, rem, s.flags, nil)
					mustOut(t, tb, p)
					ext = srcOf(p).Port()
				} else {
					mustIn(t, tb, tcpPacket(rem, ap(pub, ext), s.flags, nil))
				}
			}
			probe := func() error {
				// An inbound ACK: it must not change the state, so probe with
				// Expire instead and look at the session count.
				tb.Expire()
				if tb.Sessions() == 0 {
					return ErrNoMapping
				}
				return nil
			}
			clk.Advance(c.life - time.Second)
			if err := probe(); err != nil {
				t.Fatalf("gone before %v", c.life)
			}
			clk.Advance(time.Second)
			if err := probe(); err == nil {
				t.Fatalf("still there after %v", c.life)
			}
			if err := tb.Inbound(tcpPacket(rem, ap(pub, ext), ack, nil)); err != ErrNoMapping {
				t.Fatalf("inbound after expiry: %v", err)
			}
		})
	}
}

// RFC 5382 REQ-2a: with address-and-port-dependent filtering, a
// simultaneous open (outbound SYN, then inbound SYN without ACK) passes.
func TestRFC5382REQ2SimultaneousOpen(t *testing.T) {
	tb, _ := newTable(t, Config{Filtering: AddressAndPortDependent})
	out := tcpPacket(ap(lanA, 50000), ap(remote1, 6000), header.TCPFlagSyn, nil)
	mustOut(t, tb, out)
	in := tcpPacket(ap(remote1, 6000), ap(pub, srcOf(out).Port()), header.TCPFlagSyn, nil)
	mustIn(t, tb, in)
	if dstOf(in) != ap(lanA, 50000) {
		t.Fatalf("inbound SYN to %v", dstOf(in))
	}
}

// RFC 5508 REQ-8 / RFC 6888 REQ-11a: a full port set is a counted drop, and
// ports come back when mappings expire.
func TestRFC6888REQ11PortSetExhaustedIsACountedDrop(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	tb := New(Config{Now: clk.Now})
	tiny := portset.Range{First: 4096, Size: 4}
	if err := tb.SetExternal(pub, tiny); err != nil {
		t.Fatal(err)
	}
	seen := map[uint16]bool{}
	for i := range 4 {
		p := udpPacket(ap(lanA, uint16(30000+i)), ap(remote1, 53), nil)
		mustOut(t, tb, p)
		port := srcOf(p).Port()
		if !tiny.Contains(port) || seen[port] {
			t.Fatalf("port %d: outside the set or reused", port)
		}
		seen[port] = true
	}
	p := udpPacket(ap(lanA, 30004), ap(remote1, 53), nil)
	orig := clone(p)
	if _, err := tb.Outbound(p); err != ErrPortsExhausted {
		t.Fatalf("5th mapping: %v, want ErrPortsExhausted", err)
	}
	if !bytes.Equal(p, orig) {
		t.Fatal("dropped packet modified")
	}
	if got := tb.Stats().DropOut.PortsExhausted; got != 1 {
		t.Fatalf("PortsExhausted = %d", got)
	}
	// Existing mappings keep working; TCP has its own ports.
	mustOut(t, tb, udpPacket(ap(lanA, 30000), ap(remote2, 53), nil))
	mustOut(t, tb, tcpPacket(ap(lanA, 30004), ap(remote1, 80), header.TCPFlagSyn, nil))
	// Once the UDP mappings expire their ports are reused, without Expire.
	clk.Advance(DefaultUDPTimeout + time.Second)
	mustOut(t, tb, p)
	if !tiny.Contains(srcOf(p).Port()) {
		t.Fatalf("port %d", srcOf(p).Port())
	}
}

// RFC 7596 §5.1: the NAPT table is flushed when the address or port set
// changes, not when the same values are installed again.
func TestRFC7596SetExternalFlushesOnChange(t *testing.T) {
	tb, _ := newTable(t, Config{})
	open := func() {
		mustOut(t, tb, udpPacket(ap(lanA, 40000), ap(remote1, 53), nil))
		if _, err := tb.AddExplicit(protoTCP, ap(lanB, 8080), 0, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	open()
	if err := tb.SetExternal(pub, portset.Range{First: 4096, Size: 1024}); err != nil {
		t.Fatal(err)
	}
	if tb.Sessions() != 1 || tb.Stats().Mappings != 2 {
		t.Fatal("same address and set flushed the table")
	}
	if err := tb.SetExternal(pub2, testSet); err != nil {
		t.Fatal(err)
	}
	if st := tb.Stats(); tb.Sessions() != 0 || st.Mappings != 0 || st.Explicit != 0 {
		t.Fatalf("address change kept state: %+v", st)
	}
	if a, _, ok := tb.External(); !ok || a != pub2 {
		t.Fatalf("External = %v %v", a, ok)
	}
	open()
	if err := tb.SetExternal(pub2, portset.Range{First: 8192, Size: 1024}); err != nil {
		t.Fatal(err)
	}
	if tb.Sessions() != 0 || tb.Stats().Mappings != 0 {
		t.Fatal("port set change kept state")
	}
	p := udpPacket(ap(lanA, 40000), ap(remote1, 53), nil)
	mustOut(t, tb, p)
	if s := srcOf(p); s.Addr() != pub2 || s.Port() < 8192 || s.Port() >= 9216 {
		t.Fatalf("translated to %v", s)
	}
	if err := tb.SetExternal(netip.MustParseAddr("2001:db8::1"), testSet); !errors.Is(err, ErrInvalid) {
		t.Fatalf("IPv6 external address: %v", err)
	}
	if err := tb.SetExternal(pub, portset.Range{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty set: %v", err)
	}

	tb.Clear()
	if _, err := tb.Outbound(udpPacket(ap(lanA, 40000), ap(remote1, 53), nil)); err != ErrNoExternal {
		t.Fatalf("after Clear: %v", err)
	}
	if err := tb.Inbound(udpPacket(ap(remote1, 53), ap(pub2, 8200), nil)); err != ErrNoExternal {
		t.Fatalf("after Clear: %v", err)
	}
	if _, err := tb.AddExplicit(protoUDP, ap(lanA, 1), 0, time.Hour); err != ErrNoExternal {
		t.Fatalf("AddExplicit after Clear: %v", err)
	}
	if st := tb.Stats(); st.DropOut.NoExternal != 1 || st.DropIn.NoExternal != 1 {
		t.Fatalf("drops %+v", st)
	}
}

func TestFlushKeepsExternal(t *testing.T) {
	tb, _ := newTable(t, Config{})
	mustOut(t, tb, udpPacket(ap(lanA, 40000), ap(remote1, 53), nil))
	tb.Flush()
	if tb.Sessions() != 0 {
		t.Fatal("Flush kept sessions")
	}
	mustOut(t, tb, udpPacket(ap(lanA, 40000), ap(remote1, 53), nil))
}

// RFC 7596 §5.1 (lwB4 downstream): a packet not addressed to the public
// address MUST be dropped.
func TestRFC7596InboundNotToExternalAddress(t *testing.T) {
	tb, _ := newTable(t, Config{})
	out := udpPacket(ap(lanA, 40000), ap(remote1, 53), nil)
	mustOut(t, tb, out)
	if err := tb.Inbound(udpPacket(ap(remote1, 53), ap(pub2, srcOf(out).Port()), nil)); err != ErrNotExternal {
		t.Fatalf("%v, want ErrNotExternal", err)
	}
	if tb.Stats().DropIn.NotExternal != 1 {
		t.Fatal("not counted")
	}
}

// RFC 6887 §11.3 and §15: explicit mappings come from the same pool, accept
// any remote endpoint, and deleting one does not cut live traffic short.
func TestRFC6887ExplicitMappings(t *testing.T) {
	tb, clk := newTable(t, Config{Filtering: AddressAndPortDependent})
	ext, err := tb.AddExplicit(protoTCP, ap(lanB, 8080), 4500, 2*time.Hour)
	if err != nil || ext != 4500 {
		t.Fatalf("AddExplicit = %d, %v; want the suggested 4500", ext, err)
	}
	// Unsolicited inbound from anyone passes, despite APDF.
	for _, r := range []netip.AddrPort{ap(remote1, 1111), ap(remote2, 2222)} {
		in := tcpPacket(r, ap(pub, 4500), header.TCPFlagSyn, nil)
		mustIn(t, tb, in)
		if dstOf(in) != ap(lanB, 8080) {
			t.Fatalf("to %v", dstOf(in))
		}
	}
	// Replies use the same mapping.
	out := tcpPacket(ap(lanB, 8080), ap(remote1, 1111), header.TCPFlagSyn|header.TCPFlagAck, nil)
	mustOut(t, tb, out)
	if srcOf(out) != ap(pub, 4500) {
		t.Fatalf("reply from %v", srcOf(out))
	}
	// Renewal keeps the port even with another suggestion.
	if ext2, err := tb.AddExplicit(protoTCP, ap(lanB, 8080), 4600, 2*time.Hour); err != nil || ext2 != 4500 {
		t.Fatalf("renewal = %d, %v", ext2, err)
	}
	// A taken or out-of-set suggestion yields another port of the set.
	if e, err := tb.AddExplicit(protoTCP, ap(lanA, 8080), 4500, time.Hour); err != nil || e == 4500 || !testSet.Contains(e) {
		t.Fatalf("taken suggestion: %d, %v", e, err)
	}
	if e, err := tb.AddExplicit(protoUDP, ap(lanA, 9), 80, time.Hour); err != nil || !testSet.Contains(e) {
		t.Fatalf("out-of-set suggestion: %d, %v", e, err)
	}
	if st := tb.Stats(); st.Explicit != 3 {
		t.Fatalf("Explicit = %d", st.Explicit)
	}
	// Delete: the established session keeps the mapping (RFC 6887 §15).
	rem, err := tb.RemoveExplicit(protoTCP, ap(lanB, 8080))
	if err != nil || rem <= DefaultTCPTransitoryTimeout {
		t.Fatalf("RemoveExplicit = %v, %v; want the established session's remaining time", rem, err)
	}
	if _, err := tb.RemoveExplicit(protoTCP, ap(lanB, 8080)); err != ErrNoMapping {
		t.Fatalf("second RemoveExplicit: %v", err)
	}
	// Now filtering applies again: remote2 never got a reply.
	if err := tb.Inbound(tcpPacket(ap(remote2, 3333), ap(pub, 4500), header.TCPFlagSyn, nil)); err != ErrFiltered {
		t.Fatalf("after delete: %v, want ErrFiltered", err)
	}
	// An explicit mapping with no traffic ends with its lifetime.
	clk.Advance(time.Hour + time.Second)
	tb.Expire()
	if st := tb.Stats(); st.Explicit != 0 {
		t.Fatalf("Explicit after lifetimes = %d", st.Explicit)
	}
	// Removing an idle explicit mapping removes it at once.
	e, _ := tb.AddExplicit(protoUDP, ap(lanA, 7), 0, time.Hour)
	if rem, err := tb.RemoveExplicit(protoUDP, ap(lanA, 7)); err != nil || rem != 0 {
		t.Fatalf("RemoveExplicit idle = %v, %v", rem, err)
	}
	if err := tb.Inbound(udpPacket(ap(remote1, 1), ap(pub, e), nil)); err != ErrNoMapping {
		t.Fatalf("after removal: %v", err)
	}
	// Bad arguments.
	for _, c := range []struct {
		proto uint8
		in    netip.AddrPort
		life  time.Duration
		want  error
	}{
		{protoICMP, ap(lanA, 1), time.Hour, ErrUnsupported},
		{0, ap(lanA, 1), time.Hour, ErrUnsupported},
		{protoTCP, ap(lanA, 0), time.Hour, ErrInvalid},
		{protoTCP, netip.MustParseAddrPort("[2001:db8::1]:80"), time.Hour, ErrInvalid},
		{protoTCP, ap(lanA, 1), 0, ErrInvalid},
	} {
		if _, err := tb.AddExplicit(c.proto, c.in, 0, c.life); !errors.Is(err, c.want) {
			t.Errorf("AddExplicit(%d, %v, %v) = %v, want %v", c.proto, c.in, c.life, err, c.want)
		}
	}
}

// Explicit and implicit mappings share the pool: a full set refuses both.
func TestExplicitMappingsShareThePool(t *testing.T) {
	tb := New(Config{})
	if err := tb.SetExternal(pub, portset.Range{First: 5000, Size: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.AddExplicit(protoUDP, ap(lanA, 1), 0, time.Hour); err != nil {
		t.Fatal(err)
	}
	mustOut(t, tb, udpPacket(ap(lanB, 2), ap(remote1, 53), nil))
	if _, err := tb.AddExplicit(protoUDP, ap(lanB, 3), 0, time.Hour); err != ErrPortsExhausted {
		t.Fatalf("AddExplicit on a full set: %v", err)
	}
	if _, err := tb.Outbound(udpPacket(ap(lanB, 4), ap(remote1, 53), nil)); err != ErrPortsExhausted {
		t.Fatalf("Outbound on a full set: %v", err)
	}
}

// RFC 4787 REQ-9 and RFC 5382 REQ-8: hairpinning, with the "external source
// IP address and port" behaviour, filtering applied.
func TestRFC4787REQ9RFC5382REQ8Hairpinning(t *testing.T) {
	for _, proto := range []uint8{protoUDP, protoTCP} {
		tb, _ := newTable(t, Config{Filtering: AddressAndPortDependent})
		mk := func(src, dst netip.AddrPort) []byte {
			if proto == protoUDP {
				return udpPacket(src, dst, []byte("hairpin"))
			}
			return tcpPacket(src, dst, header.TCPFlagSyn, []byte("hairpin"))
		}
		// B serves on an explicit mapping.
		extB, err := tb.AddExplicit(proto, ap(lanB, 9000), 0, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		p := mk(ap(lanA, 40000), ap(pub, extB))
		hp, err := tb.Outbound(p)
		if err != nil || !hp {
			t.Fatalf("proto %d: Outbound = %v, %v; want hairpin", proto, hp, err)
		}
		mustValid(t, p)
		extA := srcOf(p).Port()
		if srcOf(p).Addr() != pub || !testSet.Contains(extA) || dstOf(p) != ap(lanB, 9000) {
			t.Fatalf("hairpinned %v → %v", srcOf(p), dstOf(p))
		}
		// B answers A at its external endpoint: hairpinned back.
		r := mk(ap(lanB, 9000), ap(pub, extA))
		if hp, err := tb.Outbound(r); err != nil || !hp {
			t.Fatalf("reply: %v, %v", hp, err)
		}
		mustValid(t, r)
		if srcOf(r) != ap(pub, extB) || dstOf(r) != ap(lanA, 40000) {
			t.Fatalf("reply %v → %v", srcOf(r), dstOf(r))
		}
		// Without an explicit mapping, APDF refuses an unsolicited hairpin.
		q := mk(ap(lanA, 40001), ap(pub, extA+0)) // to A's own mapping, from another endpoint
		if _, err := tb.Outbound(q); err != ErrFiltered {
			t.Fatalf("unsolicited hairpin: %v, want ErrFiltered", err)
		}
		if st := tb.Stats(); st.Hairpinned != 2 || st.DropOut.Filtered != 1 {
			t.Fatalf("stats %+v", st)
		}
	}
}

// RFC 4787 REQ-11 spirit and the session bound: MaxSessions caps sessions.
func TestMaxSessions(t *testing.T) {
	tb, _ := newTable(t, Config{MaxSessions: 2})
	mustOut(t, tb, udpPacket(ap(lanA, 1000), ap(remote1, 1), nil))
	mustOut(t, tb, udpPacket(ap(lanA, 1000), ap(remote1, 2), nil))
	if _, err := tb.Outbound(udpPacket(ap(lanA, 1000), ap(remote1, 3), nil)); err != ErrTooManySessions {
		t.Fatalf("%v, want ErrTooManySessions", err)
	}
	if _, err := tb.Outbound(udpPacket(ap(lanB, 1000), ap(remote1, 3), nil)); err != ErrTooManySessions {
		t.Fatalf("%v, want ErrTooManySessions", err)
	}
	if st := tb.Stats(); st.Mappings != 1 || st.DropOut.TooManySessions != 2 {
		t.Fatalf("stats %+v", st)
	}
	mustOut(t, tb, udpPacket(ap(lanA, 1000), ap(remote1, 2), nil)) // existing session
}

func TestExpireRemovesIdleState(t *testing.T) {
	tb, clk := newTable(t, Config{})
	mustOut(t, tb, udpPacket(ap(lanA, 1000), ap(remote1, 1), nil))
	mustOut(t, tb, echoPacket(lanA, remote1, header.ICMPv4Echo, 7, 1, nil))
	mustOut(t, tb, tcpPacket(ap(lanA, 1000), ap(remote1, 80), header.TCPFlagSyn, nil))
	st := tb.Stats()
	if st.UDPSessions != 1 || st.ICMPSessions != 1 || st.TCPSessions != 1 || st.Mappings != 3 {
		t.Fatalf("stats %+v", st)
	}
	clk.Advance(DefaultICMPTimeout)
	tb.Expire()
	if st := tb.Stats(); st.ICMPSessions != 0 || st.Mappings != 2 {
		t.Fatalf("after 60 s: %+v", st)
	}
	clk.Advance(DefaultUDPTimeout)
	tb.Expire()
	if st := tb.Stats(); st.Mappings != 0 || tb.Sessions() != 0 {
		t.Fatalf("after 5 min: %+v", st)
	}
}

// Malformed input is a counted drop with a sentinel: no panic, no state
// change, the packet unchanged.
func TestMalformedInputIsACountedDrop(t *testing.T) {
	good := udpPacket(ap(lanA, 40000), ap(remote1, 53), []byte("payload"))
	mod := func(f func(b []byte) []byte) []byte { return f(clone(good)) }
	fixIP := func(b []byte) []byte {
		h := header.IPv4(b)
		h.SetChecksum(0)
		h.SetChecksum(^h.CalculateChecksum())
		return b
	}
	cases := []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"short", good[:19], ErrMalformed},
		{"ipv6", mod(func(b []byte) []byte { b[0] = 0x65; return b }), ErrMalformed},
		{"ihl-4", mod(func(b []byte) []byte { b[0] = 0x44; return b }), ErrMalformed},
		{"ihl-beyond", mod(func(b []byte) []byte { b[0] = 0x4f; return b[:40] }), ErrMalformed},
		{"total-length-beyond", mod(func(b []byte) []byte { return fixIP(b)[:len(b)-1] }), ErrMalformed},
		{"total-length-below-ihl", mod(func(b []byte) []byte { b[2], b[3] = 0, 10; return fixIP(b) }), ErrMalformed},
		{"bad-ip-checksum", mod(func(b []byte) []byte { b[10] ^= 1; return b }), ErrChecksum},
		{"truncated-udp", mod(func(b []byte) []byte { b[2], b[3] = 0, 27; return fixIP(b) }), ErrMalformed},
		{"udp-length-long", mod(func(b []byte) []byte { b[24], b[25] = 0, 200; return b }), ErrMalformed},
		{"udp-length-short", mod(func(b []byte) []byte { b[24], b[25] = 0, 7; return b }), ErrMalformed},
		{"non-first-fragment", mod(func(b []byte) []byte { b[7] = 1; return fixIP(b) }), ErrFragment},
		{"gre", mod(func(b []byte) []byte { b[9] = 47; return fixIP(b) }), ErrUnsupported},
		{"truncated-tcp", func() []byte {
			b := tcpPacket(ap(lanA, 1), ap(remote1, 2), header.TCPFlagSyn, nil)
			b[2], b[3] = 0, 39
			return fixIP(b)[:39]
		}(), ErrMalformed},
		{"tcp-data-offset", func() []byte {
			b := tcpPacket(ap(lanA, 1), ap(remote1, 2), header.TCPFlagSyn, nil)
			b[32] = 0xf0
			return b
		}(), ErrMalformed},
		{"short-icmp", func() []byte {
			b := echoPacket(lanA, remote1, header.ICMPv4Echo, 1, 1, nil)
			b[2], b[3] = 0, 27
			return fixIP(b)[:27]
		}(), ErrMalformed},
		{"icmp-checksum", func() []byte {
			b := echoPacket(lanA, remote1, header.ICMPv4Echo, 1, 1, nil)
			b[22] ^= 0xff
			return b
		}(), ErrChecksum},
		{"icmp-timestamp", func() []byte {
			b := echoPacket(lanA, remote1, 13, 1, 1, nil)
			return b
		}(), ErrUnsupported},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb, _ := newTable(t, Config{})
			orig := clone(c.pkt)
			if _, err := tb.Outbound(c.pkt); err != c.want {
				t.Errorf("Outbound = %v, want %v", err, c.want)
			}
			if err := tb.Inbound(c.pkt); err != c.want {
				t.Errorf("Inbound = %v, want %v", err, c.want)
			}
			if !bytes.Equal(c.pkt, orig) {
				t.Error("packet modified")
			}
			st := tb.Stats()
			if tb.Sessions() != 0 || st.Mappings != 0 {
				t.Error("state changed")
			}
			if st.DropOut.Total() != 1 || st.DropIn.Total() != 1 {
				t.Errorf("drops out %+v in %+v", st.DropOut, st.DropIn)
			}
		})
	}
}

// A first fragment carries the ports and is translated; the transport
// checksum (over the whole datagram) is updated incrementally all the same.
func TestFirstFragmentTranslated(t *testing.T) {
	tb, _ := newTable(t, Config{})
	whole := udpPacket(ap(lanA, 40000), ap(remote1, 53), bytes.Repeat([]byte{7}, 64))
	// Cut it as the sender would: first fragment with 32 payload octets.
	frag := clone(whole[:20+32])
	h := header.IPv4(frag)
	h.SetTotalLength(52)
	h.SetFlagsFragmentOffset(header.IPv4FlagMoreFragments, 0)
	h.SetChecksum(0)
	h.SetChecksum(^h.CalculateChecksum())
	mustOut(t, tb, frag)
	// Reassemble with the untranslated tail and check the UDP checksum.
	mustOut(t, tb, whole) // same flow, so the same translation
	if !bytes.Equal(frag[20:52], whole[20:52]) {
		t.Fatal("first fragment and whole datagram translated differently")
	}
}

// RFC 768: a zero UDP checksum means none and stays zero.
func TestUDPZeroChecksumStaysZero(t *testing.T) {
	tb, _ := newTable(t, Config{})
	p := udpPacket(ap(lanA, 40000), ap(remote1, 53), []byte("x"))
	p[26], p[27] = 0, 0
	mustOut(t, tb, p)
	if p[26] != 0 || p[27] != 0 {
		t.Fatalf("zero UDP checksum became %#02x%02x", p[26], p[27])
	}
}

// Concurrent use under -race.
func TestConcurrentUse(t *testing.T) {
	tb := New(Config{})
	if err := tb.SetExternal(pub, testSet); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				p := udpPacket(ap(lanA, uint16(10000+g*1000+i%50)), ap(remote1, 53), nil)
				if _, err := tb.Outbound(p); err != nil {
					t.Error(err)
					return
				}
				r := udpPacket(ap(remote1, 53), srcOf(p), nil)
				if err := tb.Inbound(r); err != nil {
					t.Error(err)
					return
				}
				if i%100 == 0 {
					tb.Expire()
					_ = tb.Stats()
				}
			}
		})
	}
	wg.Wait()
}

// RFC 7596 §1: the public address is shared among B4s. A LAN packet to the
// public address but a port outside our set is for another B4 on the same
// address: it is translated as outbound traffic, not hairpinned back onto
// the LAN, so the AFTR can hairpin it to its owner.
func TestSharedAddressPortOutsideSetIsNotHairpinned(t *testing.T) {
	tb, _ := newTable(t, Config{})
	pkt := udpPacket(ap(lanA, 5000), ap(pub, 100), []byte("to a neighbour"))
	hairpin, err := tb.Outbound(pkt)
	if err != nil || hairpin {
		t.Fatalf("Outbound = hairpin %v, %v; want an ordinary outbound translation", hairpin, err)
	}
	if dst := dstOf(pkt); dst != ap(pub, 100) {
		t.Fatalf("destination rewritten to %v", dst)
	}
	if src := srcOf(pkt); src.Addr() != pub || !testSet.Contains(src.Port()) {
		t.Fatalf("source %v not in our set", src)
	}
	mustValid(t, pkt)
}
