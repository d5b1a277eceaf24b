package b4

import (
	"context"
	"net/netip"

	"github.com/lw4o6/lw4o6/b4/lanpcp"
	"github.com/lw4o6/lw4o6/stack/packet"
)

// The LAN's port-mapping server (b4/lanpcp) on the B4's LAN link: UDP to
// Gateway:5351 from a LAN host is answered from Gateway:5351, and the
// server's announcements go to 224.0.0.1:5350 on the link. Where the LAN's
// gateway is the host's own address (TUN mode), the daemon serves the same
// Server on host sockets (LANPCP).

var allHosts = [4]byte{224, 0, 0, 1}

func (b *B4) newLANPCP() {
	if b.cfg.DisableLANPCP {
		return
	}
	lc := b.cfg.LANPCP
	if lc.Now == nil {
		lc.Now = b.now
	}
	if lc.Logger == nil {
		lc.Logger = b.log.With("part", "lan-pcp")
	}
	b.lanSrv = lanpcp.New(lc, b.nat)
	b.lanSrv.Subscribe(func(payload []byte) {
		// Link-local group: TTL 1 (RFC 5771 §4, 224.0.0.0/24).
		pkt := packet.AppendUDP4(nil, 0, b.gw4, allHosts, lanpcp.ServerPort, lanpcp.ClientPort, 1, payload)
		b.count.Count(cOutLANPCP, len(pkt))
		b.lan.Send(pkt)
	})
}

// LANPCP is the LAN port-mapping server, for the daemon's host sockets; nil
// when disabled.
func (b *B4) LANPCP() *lanpcp.Server { return b.lanSrv }

// toLANPCP serves a packet from the LAN to Gateway:5351/udp and reports
// whether it was one (answered or dropped here).
func (b *B4) toLANPCP(ip4 packet.IPv4) bool {
	if b.lanSrv == nil || ip4.Dst() != b.gw4 || ip4.Protocol() != packet.ProtoUDP {
		return false
	}
	if ip4.IsFragment() {
		b.count.Count(cDropLANPCP, len(ip4)) // PCP messages fit in one datagram (≤ 1100 octets)
		return ip4.FragOffset() != 0 || len(ip4.Payload()) < 4 || portOf(ip4.Payload()[2:]) == lanpcp.ServerPort
	}
	var u packet.UDP
	if err := packet.ParseUDP4(ip4, &u); err != nil || u.DstPort != lanpcp.ServerPort {
		if err != nil && len(ip4.Payload()) >= 4 && portOf(ip4.Payload()[2:]) == lanpcp.ServerPort {
			b.count.Count(cDropLANPCP, len(ip4))
			return true
		}
		return false
	}
	b.count.Count(cInLANPCP, len(ip4))
	src := netip.AddrPortFrom(ip4.SrcAddr(), u.SrcPort)
	resp := b.lanSrv.Handle(u.Data, src)
	if resp == nil {
		b.count.Count(cDropLANPCP, len(ip4))
		return true
	}
	out := packet.AppendUDP4(nil, 0, b.gw4, ip4.Src(), lanpcp.ServerPort, u.SrcPort, 64, resp)
	b.count.Count(cOutLANPCP, len(out))
	b.lan.Send(out)
	return true
}

func portOf(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }

// runLANPCP sends the server's announcements until ctx ends; the returned
// channel closes when it has stopped.
func (b *B4) runLANPCP(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	if b.lanSrv == nil {
		close(done)
		return done
	}
	go func() { defer close(done); b.lanSrv.Run(ctx) }()
	return done
}

// lanProvisioned tells the LAN server the NAT's address and set after a
// (re)provisioning or renewal, and reports the static forwards when they
// were (re)installed.
func (b *B4) lanProvisioned() {
	if b.lanSrv == nil {
		return
	}
	addr, ports, ok := b.nat.External()
	if !ok {
		return
	}
	fw := b.lanSrv.Provisioned(addr, ports)
	b.setStatus(func(s *Status) { s.Forwards = fw })
	for _, f := range fw {
		if f.Err != nil {
			b.log.Warn("forward not installed", "forward", f.Forward, "err", f.Err)
		}
	}
}

func (b *B4) lanDeprovisioned() {
	if b.lanSrv != nil {
		b.lanSrv.Deprovisioned()
	}
}

func (b *B4) lanStatus(s *Status) {
	s.Pool = b.nat.Fill()
	if b.lanSrv != nil {
		s.LANMappings = b.lanSrv.Mappings()
		s.LANPCP = b.lanSrv.Stats()
	}
}
