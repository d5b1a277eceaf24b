package aftr

import (
	"net/netip"
	"testing"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
)

const tProvPort = 41000 // the provisioning system's PCP client port

// provPacket is a PCP request from src over plain IPv6/UDP to the AFTR's
// port 5351, its Client IP field src (RFC 6887 §8.1).
func provPacket(t testing.TB, src netip.Addr, q mapReq) []byte {
	t.Helper()
	b := q.marshal(t)
	copy(b[8:24], src.AsSlice()) // Client IP: the datagram's source
	return packet.UDP6(a16(src), a16(tAFTR), tProvPort, pcp.ServerPort, 64, b)
}

// provision sends q from the provisioning system and returns its answer,
// checking that it comes back over plain IPv6/UDP from the address and
// port asked (RFC 6887 §8.3).
func (r *rig) provision(q mapReq) *pcp.Message {
	r.t.Helper()
	r.a.FromAccess(provPacket(r.t, tProv, q))
	b := r.oneAccess()
	var o packet.IPv6
	if err := packet.ParseIPv6(b, &o); err != nil {
		r.t.Fatal(err)
	}
	var u packet.UDP
	if err := packet.ParseUDP6(&o, &u); err != nil {
		r.t.Fatalf("answer is not UDP over IPv6: %v", err)
	}
	if o.SrcAddr() != tAFTR || o.DstAddr() != tProv || u.SrcPort != pcp.ServerPort || u.DstPort != tProvPort {
		r.t.Fatalf("answer [%v]:%d → [%v]:%d, want [%v]:%d → [%v]:%d", o.SrcAddr(), u.SrcPort, o.DstAddr(), u.DstPort, tAFTR, pcp.ServerPort, tProv, tProvPort)
	}
	m, err := pcp.Parse(u.Data)
	if err != nil || !m.Response || m.Opcode != pcp.OpMap {
		r.t.Fatalf("answer %+v, %v", m, err)
	}
	return m
}

func thirdParty(b4 netip.Addr, nonceByte byte, lifetime uint32) mapReq {
	q := b4Req(nonceByte, lifetime)
	q.thirdParty = b4
	return q
}

// Issue 7 item 4, PROTOCOL.md §8 item 4: an authorised provisioning system
// installs a named B4's binding over plain IPv6, which then carries that
// B4's traffic; it renews it (the answer lists the binding), the B4 itself
// renews it with its own nonce, and the provisioning system deletes it.
func TestProvisionInstallRenewDelete(t *testing.T) {
	r := newRig(t, nil)
	m := r.provision(thirdParty(tB4B, 9, 3600))
	ip, first, size := granted(t, m)
	if tp, ok, _ := m.ThirdParty(); !ok || tp != tB4B {
		t.Errorf("THIRD_PARTY not echoed: %v %v", tp, ok)
	}
	if m.Lifetime != 3600 {
		t.Errorf("lifetime %d, want 3600", m.Lifetime)
	}
	b, ok := r.binding(tB4B)
	if !ok || b.ip != ip || b.first != first || b.size != uint32(size) {
		t.Fatalf("binding %+v (%v), want %v %d+%d", b, ok, ip, first, size)
	}
	if _, ok := r.binding(tProv); ok {
		t.Errorf("the provisioning system got a binding")
	}
	r.a.FromAccess(encap(tB4B, tAFTR, udp4(ip, tRemote, first, 53, 64, []byte("q"))))
	r.oneInternet()

	// Renewal by the provisioning system, with another nonce and another
	// lifetime: the same set back.
	m = r.provision(thirdParty(tB4B, 10, 7200))
	if ip2, first2, _ := granted(t, m); ip2 != ip || first2 != first || m.Lifetime != 7200 {
		t.Errorf("renewal: %v %d lifetime %d, want %v %d 7200", ip2, first2, m.Lifetime, ip, first)
	}
	// The B4 renews with its own nonce; the provisioning system still can.
	if ip2, first2, _ := granted(t, r.pcp(tB4B, b4Req(1, 3600))); ip2 != ip || first2 != first {
		t.Errorf("B4's own renewal: %v %d", ip2, first2)
	}
	if m := r.provision(thirdParty(tB4B, 11, 3600)); m.Result != pcp.Success {
		t.Errorf("renewal after the B4's: %v", m.Result)
	}

	if m := r.provision(thirdParty(tB4B, 12, 0)); m.Result != pcp.Success {
		t.Errorf("delete: %v", m.Result)
	}
	if _, ok := r.binding(tB4B); ok {
		t.Errorf("binding survived the provisioner's delete")
	}
	if r.counter("in-pcp-provision") != 4 || r.counter("out-pcp-provision") != 4 {
		t.Errorf("counters %v", r.a.Counters())
	}
}

// RFC 6887 §13.1: THIRD_PARTY only on a trusted path. PCP over plain IPv6
// from anyone but a provisioning system gets no answer at all (counted); a
// provisioning system asking without THIRD_PARTY is no B4
// (NOT_AUTHORIZED); UDP to another port is no PCP.
func TestProvisionRefused(t *testing.T) {
	r := newRig(t, nil)
	for _, src := range []netip.Addr{tB4A, netip.MustParseAddr("2001:db8:ff::2")} {
		r.a.FromAccess(provPacket(t, src, thirdParty(tB4B, 1, 3600)))
		r.quiet()
	}
	if r.counter("drop-pcp-unauthorized-ipv6") != 2 || len(r.a.Bindings()) != 0 {
		t.Errorf("unauthorised provisioning: %v, %v", r.a.Counters(), r.a.Bindings())
	}
	if m := r.provision(b4Req(1, 3600)); m.Result != pcp.NotAuthorized {
		t.Errorf("provisioner without THIRD_PARTY: %v, want NOT_AUTHORIZED", m.Result)
	}
	r.a.FromAccess(packet.UDP6(a16(tProv), a16(tAFTR), tProvPort, 53, 64, thirdParty(tB4B, 1, 3600).marshal(t)))
	r.quiet()
	if r.counter("drop-unknown-protocol-ipv6") != 1 || len(r.a.Bindings()) != 0 {
		t.Errorf("UDP to port 53: %v", r.a.Counters())
	}
}

// Issue 7 item 4, PROTOCOL.md §8 item 4: a B4 naming another B4 with
// THIRD_PARTY inside its softwire is refused (RFC 6887 §13.1:
// UNSUPP_OPTION) and counted, even from a provisioning system's address:
// the softwire is the B4s' path, not the trusted one.
func TestProvisionThirdPartyInSoftwireRefused(t *testing.T) {
	r := newRig(t, nil)
	for i, from := range []netip.Addr{tB4A, tProv} {
		if m := r.pcp(from, thirdParty(tB4B, 1, 3600)); m.Result != pcp.UnsuppOption {
			t.Errorf("THIRD_PARTY in %v's softwire: %v, want UNSUPP_OPTION", from, m.Result)
		}
		if n := r.counter("drop-pcp-third-party-from-softwire"); n != uint64(i+1) {
			t.Errorf("counted %d, want %d", n, i+1)
		}
	}
	if n := len(r.a.Bindings()); n != 0 {
		t.Fatalf("%d bindings after a refused THIRD_PARTY", n)
	}
}

// Issue 11 item 1, PROTOCOL.md §8 item 3: the AFTR answers PCP in a
// softwire only from 192.0.0.2, the B4 itself; a LAN host's request NATed
// into the softwire (source: the B4's public address) or any other inner
// source is dropped and counted, and takes no binding.
func TestPCPOnlyFromB4InnerAddress(t *testing.T) {
	r := newRig(t, nil)
	ip, first, _ := r.bind(tB4A, 1)
	for i, src := range []netip.Addr{ip, netip.MustParseAddr("192.0.0.3"), tRemote} {
		r.a.FromAccess(encap(tB4A, tAFTR, udp4(src, tAFTR4, first+1, pcp.ServerPort, 64, b4Req(7, 3600).marshal(t))))
		r.quiet()
		if n := r.counter("drop-pcp-not-from-b4-ipv4"); n != uint64(i+1) {
			t.Errorf("PCP from inner %v: counted %d, want %d", src, n, i+1)
		}
	}
	// The B4's own binding is untouched: its nonce still renews it.
	if ip2, first2, _ := granted(t, r.pcp(tB4A, b4Req(1, 3600))); ip2 != ip || first2 != first {
		t.Errorf("B4 renewal after the LAN requests: %v %d", ip2, first2)
	}
}
