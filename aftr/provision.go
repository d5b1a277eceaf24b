package aftr

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
)

// Provisioning: a provisioning system (the seed's DHCP server that allocates
// a port set and must configure the AFTR, or an operator's
// `lw4o6-aftr provision`) manages the binding of a B4 it names with PCP MAP
// + THIRD_PARTY (RFC 6887 §13.1, PROTOCOL.md §8 item 4), sent over plain
// UDP to port 5351 of one of the AFTR's addresses: through the access link
// (pcpOverIPv6, for an underlay that carries whole IPv6 packets) or to a
// host socket (ServeProvisioning, for the raw underlay, which only sees
// next header 4). RFC 6887 §13.1 allows THIRD_PARTY only on a fully
// trusted network: only sources inside Config.Provisioners are answered at
// all; the rest is dropped and counted, so that the AFTR tells an
// unauthorised prober nothing. A B4 naming another B4 inside its softwire
// is answered UNSUPP_OPTION (§13.1: MUST, when THIRD_PARTY is prohibited
// for that client) and counted.

// provisioner is the PCP client identity of a provisioning system, as
// netip.Addr (the outer IPv6 source) is that of a B4.
type provisioner struct{ addr netip.Addr }

// isProvisioner reports whether src lies in Config.Provisioners.
func (a *AFTR) isProvisioner(src netip.Addr) bool {
	src = src.Unmap().WithZone("")
	for _, p := range a.cfg.Provisioners {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

// thirdPartyAllowed is pcp.ServerConfig.ThirdPartyAllowed: only
// provisioning systems may name another host.
func (a *AFTR) thirdPartyAllowed(client any) bool {
	switch client.(type) {
	case provisioner:
		return true
	case netip.Addr, *pcpCall:
		// One B4 naming another through its softwire: refused (the
		// server answers UNSUPP_OPTION), counted. The request's size is
		// not known here, so only packets count.
		a.count.Count(cDropThirdPartyFromSoftwire, 0)
	}
	return false
}

// Provision serves one PCP request a provisioning system sent over plain
// UDP from src, and returns the answer to send back to src from the address
// and port it was sent to; nil means drop (counted): src is not an
// authorised provisioning system, or the request is one RFC 6887 §8.2 says
// to drop silently.
//
// The answer is returned once the change it reports is durable in the
// journal (Config.StateDir): Provision waits for the fsync.
func (a *AFTR) Provision(req []byte, src netip.Addr) []byte {
	resp := a.provision(req, src)
	if resp != nil && a.journal != nil {
		if err := a.journal.Sync(); err != nil {
			a.count.Count(cDropPCPUnjournaled, len(resp))
			return nil
		}
	}
	return resp
}

// provision is Provision without waiting for the journal.
func (a *AFTR) provision(req []byte, src netip.Addr) []byte {
	src = src.Unmap().WithZone("")
	if !a.isProvisioner(src) {
		a.count.Count(cDropPCPUnauthorized, len(req))
		return nil
	}
	a.count.Count(cInPCPProvision, len(req))
	resp := a.pcp.Handle(req, src, provisioner{src})
	if resp == nil {
		a.count.Count(cDropPCPMalformed, len(req))
		return nil
	}
	a.count.Count(cOutPCPProvision, len(resp))
	return resp
}

// pcpOverIPv6 serves UDP from the access network to one of the AFTR's
// addresses: PCP to port 5351 from a provisioning system, answered from
// the address it was sent to. Other UDP is an unknown protocol there.
func (a *AFTR) pcpOverIPv6(outer *packet.IPv6) {
	var u packet.UDP
	if err := packet.ParseUDP6(outer, &u); err != nil || u.DstPort != pcpServerPort {
		a.count.Count(cDropUnknownProtocolIPv6, len(outer.Packet))
		return
	}
	resp := a.provision(u.Data, outer.SrcAddr())
	if resp == nil {
		return
	}
	// Sent once the journal has the change, without holding up the
	// data path (answerPCP).
	a.answerPCP(packet.UDP6(outer.Dst, outer.Src, pcpServerPort, u.SrcPort, a.cfg.HopLimit, resp), nil)
}

// ServeProvisioning answers provisioning systems on conn (a host UDP
// socket, e.g. [2001:db8::1]:5351) with Provision until ctx is done or conn
// fails. One datagram at a time: the work per request is small, and
// unauthorised sources cost one prefix check.
func (a *AFTR) ServeProvisioning(ctx context.Context, conn net.PacketConn) error {
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, pcp.MaxMessageLen+1) // one more octet shows an oversize request
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		if resp := a.Provision(buf[:n], ua.AddrPort().Addr()); resp != nil {
			if _, err := conn.WriteTo(resp, from); err != nil {
				a.log.Debug("provisioning answer not sent", "to", from, "err", err)
			}
		}
	}
}
