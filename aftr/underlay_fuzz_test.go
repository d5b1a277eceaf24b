package aftr

import (
	"encoding/binary"
	"testing"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
)

// foldNonce is the id the predicates give a nonce, computed apart.
func foldNonce(n []byte) uint64 {
	return binary.BigEndian.Uint64(n[0:8]) ^ uint64(binary.BigEndian.Uint32(n[8:12]))
}

// checkPredicates holds UnderlayClaim and UnderlayAnswer to their
// documents on any packet: a claim is a softwire packet carrying UDP to
// 192.0.0.1:5351 whose payload is a version 2 MAP request with a whole
// nonce, its id the folded nonce; an answer is UDP from 192.0.0.1:5351
// carrying a version 2 MAP response, granting exactly when the result is
// SUCCESS; no packet is both.
func checkPredicates(t *testing.T, p []byte) {
	t.Helper()
	id, claim := UnderlayClaim(p)
	aid, isAnswer, granted := UnderlayAnswer(p)
	if claim && isAnswer {
		t.Fatalf("both a claim and an answer: % x", p)
	}
	if granted && !isAnswer {
		t.Fatalf("granted but no answer: % x", p)
	}
	if !claim && !isAnswer {
		return
	}
	var outer packet.IPv6
	ip4, err := packet.Decapsulate(p, &outer)
	var u packet.UDP
	if err == nil {
		err = packet.ParseUDP4(ip4, &u)
	}
	if err != nil {
		t.Fatalf("claim %v answer %v on no softwire UDP (%v): % x", claim, isAnswer, err, p)
	}
	m := u.Data
	if len(m) < pcp.HeaderLen+pcp.NonceLen || m[0] != pcp.Version || pcp.Opcode(m[1]&0x7f) != pcp.OpMap {
		t.Fatalf("claim %v answer %v on no PCP v2 MAP: % x", claim, isAnswer, m)
	}
	n := m[pcp.HeaderLen : pcp.HeaderLen+pcp.NonceLen]
	if claim && (ip4.Dst() != addrAFTR4 || u.DstPort != pcp.ServerPort || m[1]&0x80 != 0 || id != foldNonce(n)) {
		t.Fatalf("claim (id %x) on %v:%d → %v:%d, R %v, nonce % x", id, ip4.Src(), u.SrcPort, ip4.Dst(), u.DstPort, m[1]&0x80 != 0, n)
	}
	if isAnswer && (ip4.Src() != addrAFTR4 || u.SrcPort != pcp.ServerPort || m[1]&0x80 == 0 || aid != foldNonce(n) || granted != (m[3] == byte(pcp.Success))) {
		t.Fatalf("answer (id %x granted %v) on %v:%d → %v:%d, R %v, result %d", aid, granted, ip4.Src(), u.SrcPort, ip4.Dst(), u.DstPort, m[1]&0x80 != 0, m[3])
	}
}

// FuzzUnderlayPredicates checks the UDP underlay's handshake predicates
// (checkPredicates) on arbitrary octets as a packet, and end to end with
// them as the PCP payload of a B4's softwire packet to the AFTR: a claim
// exactly when they are a MAP request, and every answer the AFTR sends
// that grants goes to that B4 with the claim's id, the B4 holding a
// binding unless it asked for a delete — so no endpoint is bound by a
// packet that won nothing. Seeds: testdata/fuzz/FuzzUnderlayPredicates.
func FuzzUnderlayPredicates(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		checkPredicates(t, data)
		r := newRig(t, nil)
		req := pcpPacket(tB4C, data)
		checkPredicates(t, req)
		id, claim := UnderlayClaim(req)
		isReq := len(data) >= pcp.HeaderLen+pcp.NonceLen && data[0] == pcp.Version && data[1] == byte(pcp.OpMap)
		if claim != isReq {
			t.Fatalf("claim %v for a payload that is a MAP request: %v", claim, isReq)
		}
		r.a.FromAccess(req)
		for _, p := range r.access.take() {
			checkPredicates(t, p)
			aid, isAnswer, granted := UnderlayAnswer(p)
			if !isAnswer || !granted {
				continue
			}
			var outer packet.IPv6
			packet.ParseIPv6(p, &outer)
			if !claim || aid != id || outer.DstAddr() != tB4C {
				t.Fatalf("a granting answer (id %x) to %v for claim %v (id %x)", aid, outer.DstAddr(), claim, id)
			}
			if _, bound := r.binding(tB4C); !bound && binary.BigEndian.Uint32(data[4:]) != 0 {
				t.Fatalf("a granting answer, and the B4 holds no binding")
			}
		}
	})
}

// A B4's packet from 192.0.0.1 to port 5351 elsewhere carries no claim,
// whatever its payload; an answer must come from 192.0.0.1.
func TestUnderlayPredicatesDirection(t *testing.T) {
	req := b4Req(1, 3600).marshal(t)
	if _, ok := UnderlayClaim(encap(tB4A, tAFTR, udp4(tAFTR4, tRemote, tClientPort, pcp.ServerPort, 64, req))); ok {
		t.Error("a request from 192.0.0.1 to another host taken for a claim")
	}
	resp := append([]byte(nil), req...)
	resp[1] |= 0x80
	if _, isAnswer, _ := UnderlayAnswer(encap(tAFTR, tB4A, udp4(tRemote, tAFTR4, pcp.ServerPort, tClientPort, 64, resp))); isAnswer {
		t.Error("a response to 192.0.0.1 from another host taken for an answer")
	}
	if _, isAnswer, _ := UnderlayAnswer(encap(tAFTR, tB4A, udp4(tAFTR4, tB4In4, pcp.ServerPort, tClientPort, 64, resp))); !isAnswer {
		t.Error("the AFTR's answer not taken for one")
	}
}
