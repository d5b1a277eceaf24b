package b4

import (
	"net/netip"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
)

// The restart ANNOUNCE of RFC 6887 §14.1.3 inside the softwire: from the
// PCP server's address and port (192.0.0.1:5351) to the IPv4 all-hosts
// group on the client port, 224.0.0.1:5350. The B4's own stack holds only
// 192.0.0.2, so the data path hands these to the PCP client itself.
var allHosts4 = [4]byte{224, 0, 0, 1}

// isAnnounce4 reports whether ip4 is addressed as a restart ANNOUNCE
// (to 224.0.0.1:5350 over UDP); whether it is a genuine one is announce's
// question.
func isAnnounce4(ip4 packet.IPv4, u *packet.UDP) bool {
	return ip4.Dst() == allHosts4 && packet.ParseUDP4(ip4, u) == nil && u.DstPort == pcp.ClientPort
}

// peekAnnounce reports whether a softwire packet dropped for its outer
// addresses looked like a restart ANNOUNCE, so that the drop is counted as
// a spoofed ANNOUNCE rather than as stray traffic.
func peekAnnounce(outer *packet.IPv6) bool {
	if outer.NextHeader != packet.ProtoIPIP {
		return false
	}
	ip4, err := packet.ParseIPv4(outer.Payload)
	var u packet.UDP
	return err == nil && isAnnounce4(ip4, &u)
}

// announce handles a softwire packet to 224.0.0.1:5350 that came from the
// B4's own AFTR (outer source checked, outer destination the B4 or its
// AnnounceGroup). It reaches the PCP client only when its inner addresses
// are the server's (RFC 6887 §8.3: the client checks the source of every
// response) and it is an ANNOUNCE response with SUCCESS (§14.1.3); the
// client then runs the Epoch check and, on state loss, waits 0-5 s and
// renews with the previous address and set as suggestions. Anything else
// is counted and changes nothing: a forged packet must not even update
// the client's Epoch record.
func (b *B4) announce(ip4 packet.IPv4, u *packet.UDP) {
	m, err := pcp.Parse(u.Data)
	if ip4.Src() != addrAFTR4 || u.SrcPort != pcp.ServerPort || err != nil ||
		m.Opcode != pcp.OpAnnounce || !m.Response || m.Result != pcp.Success {
		b.count.Count(cDropAnnounceSpoofed, len(ip4))
		return
	}
	c := b.client.Load()
	if c == nil {
		b.count.Count(cDropAnnounceNoClient, len(ip4))
		return
	}
	b.count.Count(cInAnnounce, len(ip4))
	c.Input(u.Data)
}

// announceGroup16 is AnnounceGroup as the data path compares it; the zero
// value (never a multicast destination) when none is configured.
func announceGroup16(g netip.Addr) [16]byte {
	if !g.IsValid() {
		return [16]byte{}
	}
	return g.As16()
}
