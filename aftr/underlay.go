package aftr

import (
	"encoding/binary"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
)

// The lab's UDP underlay (tun/udpunder) binds a B4's IPv6 address to the
// UDP endpoint that won its PCP binding (udpunder.WithBinding):
// UnderlayClaim and UnderlayAnswer tell it which packets are PCP MAP
// requests and answers, and which request an answer is for (the mapping
// nonce, RFC 6887 §11.1).

// UnderlayClaim reports whether pkt, a softwire packet from a B4, carries a
// PCP MAP request to 192.0.0.1:5351, and its nonce as an id.
func UnderlayClaim(pkt []byte) (id uint64, ok bool) {
	u, ok := softwireUDP(pkt, true)
	if !ok || u.DstPort != pcpServerPort {
		return 0, false
	}
	return mapNonce(u.Data, false)
}

// UnderlayAnswer reports whether pkt, a softwire packet to a B4, carries a
// PCP MAP answer from 192.0.0.1:5351, its nonce as an id, and whether it
// grants the mapping (SUCCESS).
func UnderlayAnswer(pkt []byte) (id uint64, isAnswer, granted bool) {
	u, ok := softwireUDP(pkt, false)
	if !ok || u.SrcPort != pcpServerPort {
		return 0, false, false
	}
	id, ok = mapNonce(u.Data, true)
	return id, ok, ok && u.Data[3] == byte(pcp.Success)
}

// softwireUDP is the UDP datagram inside a softwire packet to the AFTR's
// 192.0.0.1 (toAFTR) or from it. A request must be to it and an answer
// from it: a B4's packet from 192.0.0.1 to elsewhere is no claim.
func softwireUDP(pkt []byte, toAFTR bool) (packet.UDP, bool) {
	var outer packet.IPv6
	var u packet.UDP
	ip4, err := packet.Decapsulate(pkt, &outer)
	if err != nil {
		return u, false
	}
	if toAFTR && ip4.Dst() != addrAFTR4 || !toAFTR && ip4.Src() != addrAFTR4 || packet.ParseUDP4(ip4, &u) != nil {
		return u, false
	}
	return u, true
}

// mapNonce is the nonce of a PCP v2 MAP message (a response when resp),
// folded into 64 bits.
func mapNonce(m []byte, resp bool) (uint64, bool) {
	if len(m) < pcp.HeaderLen+pcp.NonceLen || m[0] != pcp.Version {
		return 0, false
	}
	if r := m[1]&0x80 != 0; r != resp || pcp.Opcode(m[1]&0x7f) != pcp.OpMap {
		return 0, false
	}
	n := m[pcp.HeaderLen:]
	return binary.BigEndian.Uint64(n[0:8]) ^ uint64(binary.BigEndian.Uint32(n[8:12])), true
}
