package aftr

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
)

// pcpHandler is the AFTR's MAP policy: a MAP with PORT_SET from a B4 (named
// by the outer IPv6 source of its softwire, or by THIRD_PARTY from a
// provisioning system) asks for that B4's binding (PROTOCOL.md §8 items 1-4).
type pcpHandler AFTR

// Map implements pcp.Handler.
func (h *pcpHandler) Map(r *pcp.Request) pcp.Response {
	a := (*AFTR)(h)
	b4, ok := clientAddr(r.Client)
	_, byProvisioner := r.Client.(provisioner)
	if r.ThirdParty.IsValid() {
		// The server core already checked that this client may use
		// THIRD_PARTY (provision.go: only a provisioning system); the named
		// address is the B4 whose binding it is. A provisioning system
		// without THIRD_PARTY asks for nothing of its own: it is no B4.
		b4, ok = r.ThirdParty, byProvisioner
	}
	if !ok || !b4.Is6() || b4.Is4In6() {
		return pcp.Response{Result: pcp.NotAuthorized}
	}
	m := r.Message.Map
	if r.PortSet == nil {
		// The lwAFTR binds port sets, never single ports; a DMZ request
		// (protocol 0, port 0) could only be met with a whole address,
		// which the pool never gives (RFC 6887 §11.3: UNSUPP_PROTOCOL when
		// it cannot be satisfied in full).
		if m.Protocol == 0 {
			return pcp.Response{Result: pcp.UnsuppProtocol}
		}
		return pcp.Response{Result: pcp.NotAuthorized}
	}
	set, ok := setNumber(m.InternalPort)
	if !ok {
		return pcp.Response{Result: pcp.MalformedRequest}
	}
	if len(r.Filters) > 0 {
		// The AFTR does no filtering (RFC 7596 §6: it keeps no sessions);
		// a B4 filters on its own NAT.
		return pcp.Response{Result: pcp.ExcessiveRemotePeers}
	}

	if a.pool == nil {
		// Static bindings only: nothing to hand out (RFC 6887 §7.4).
		return pcp.Response{Result: pcp.NoResources}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	// RFC 6887 §11.3 Simple Threat Model: a request for an existing
	// mapping with another nonce is refused for the mapping's remaining life.
	// A provisioning system manages whatever binding the B4 has. (The
	// table is asked only on a nonce mismatch: the owner's renewal costs
	// no copy of its bindings.)
	if n, ok := a.nonces[b4]; ok && n != m.Nonce && !byProvisioner {
		if cur := a.table.ByB4(b4); len(cur) > 0 {
			// At least 1: 0 would become the 30-minute default (§7.4).
			return pcp.Response{Result: pcp.NotAuthorized, Lifetime: max(remaining(cur[0], now), 1)}
		}
	}
	if !a.journalReady(r.Client) {
		// Nothing changed; toSelf4 sends no answer (the B4 retransmits).
		return pcp.Response{Result: pcp.NoResources}
	}
	if r.Message.Lifetime == 0 {
		// Delete (RFC 6887 §15.1; RFC 7753 §4.2: the whole set, and only
		// that set, docs/port-sets.md). Deleting nothing succeeds too, so
		// retransmissions get the same answer.
		if ok, err := a.pool.ReleaseSet(b4, set); err != nil {
			return pcp.Response{Result: pcp.NotAuthorized}
		} else if ok {
			a.log.Info("binding deleted by PCP", "b4", b4, "set", set)
			a.journalDelete(r.Client, b4, set)
		}
		if len(a.table.ByB4(b4)) == 0 {
			delete(a.nonces, b4)
		}
		return pcp.Response{Result: pcp.Success}
	}
	req := bindings.Request{
		Size:               int(r.PortSet.Size),
		SuggestedFirstPort: m.ExternalPort,
		Lifetime:           time.Duration(r.Message.Lifetime) * time.Second,
		Set:                set,
	}
	if ip := m.ExternalIP.Unmap(); ip.Is4() && !ip.IsUnspecified() {
		req.SuggestedIPv4 = ip
	}
	b, err := a.pool.Allocate(b4, req)
	switch {
	case errors.Is(err, bindings.ErrQuota):
		return pcp.Response{Result: pcp.UserExQuota}
	case errors.Is(err, bindings.ErrSetLimit):
		return a.refuseSet(b4, set)
	case err != nil:
		a.log.Warn("PCP allocation failed", "b4", b4, "err", err)
		return pcp.Response{Result: pcp.NoResources}
	}
	if !byProvisioner {
		// A binding a provisioning system installed is the B4's to renew
		// with its own nonce, which its first request records.
		a.nonces[b4] = m.Nonce
	}
	// The journal keeps the owner's nonce (none yet for a binding a
	// provisioning system installed), never the provisioning system's.
	a.journalPut(r.Client, b, a.nonces[b4])
	first, size := firstAndSize(b)
	// Granted as the B4 suggested it, as its renewals are (b4/provision.go):
	// nothing changed for it, so at Debug; and only built when logged.
	level := slog.LevelInfo
	if req.SuggestedIPv4 == b.IPv4 && m.ExternalPort == first {
		level = slog.LevelDebug
	}
	if ctx := context.Background(); a.log.Enabled(ctx, level) {
		a.log.Log(ctx, level, "binding", "b4", b4, "set", set, "ipv4", b.IPv4, "ports", size, "first", first, "expires", b.Expires)
	}
	return pcp.Response{
		Result:       pcp.Success,
		Lifetime:     remaining(b, now),
		ExternalIP:   b.IPv4,
		ExternalPort: first,
		// The lwAFTR does not translate: internal ports are external ports
		// (PROTOCOL.md §8 item 1).
		PortSet: grantedSet(r.Client, pcp.PortSet{Size: uint16(min(size, math.MaxUint16)), FirstInternalPort: first}),
	}
}

// firstAndSize describes a binding's port set as PORT_SET can: one range.
func firstAndSize(b bindings.Binding) (uint16, int) {
	if r, ok := b.PSID.Contiguous(); ok {
		return r.First, int(r.Size)
	}
	// A static RFC 7597 set with an offset is not one range; report its
	// first range (PORT_SET cannot say more, PROTOCOL.md §3.3).
	rs := b.PSID.Ranges()
	return rs[0].First, int(rs[0].Size)
}

// remaining is a binding's remaining lifetime in PCP seconds; static
// bindings report 2^32-1 (RFC 6887 §11.3).
func remaining(b bindings.Binding, now time.Time) uint32 {
	if b.Static || b.Expires.IsZero() {
		return math.MaxUint32
	}
	d := b.Expires.Sub(now)
	if d <= 0 {
		return 0
	}
	return uint32(min(int64(d/time.Second), math.MaxUint32))
}

// toSelf4 serves softwire packets addressed to 192.0.0.1: PCP requests,
// which the AFTR accepts from any B4 before a binding exists (PROTOCOL.md
// §8 item 3), answered into the same softwire.
func (a *AFTR) toSelf4(outer *packet.IPv6, ip4 packet.IPv4) {
	var u packet.UDP
	// The answer goes to the inner source: never to a broadcast,
	// multicast or unspecified address (RFC 1122 §3.2.1.3), which names
	// no single B4.
	if err := packet.ParseUDP4(ip4, &u); err != nil || u.DstPort != pcpServerPort || !a.icmpv4Sendable(ip4) {
		a.count.Count(cDropToSelfIPv4, len(ip4))
		return
	}
	// PROTOCOL.md §8 item 3: PCP comes from the B4 itself, 192.0.0.2; a
	// LAN host's request NATed into the softwire (any other inner source)
	// could otherwise take its own B4's binding with its own nonce.
	if ip4.Src() != addrB4_4 {
		a.count.Count(cDropPCPNotFromB4, len(ip4))
		return
	}
	// Before any parsing (RFC 6887 §18.1, pcplimit.go).
	if !a.pcpAllowed(&outer.Src, len(ip4)) {
		return
	}
	a.count.Count(cInPCP, len(ip4))
	pb := pcpBufs.Get().(*pcpBuf)
	pb.call = pcpCall{b4: outer.SrcAddr()}
	resp := a.pcp.AppendHandle(pb.resp[:0], u.Data, ip4.SrcAddr(), &pb.call)
	if resp == nil {
		pb.release()
		a.count.Count(cDropPCPMalformed, len(ip4))
		return
	}
	pb.resp = resp[:0] // keep what it grew to
	if pb.call.unjournaled {
		pb.release()
		a.count.Count(cDropPCPUnjournaled, len(ip4))
		return
	}
	b := packet.AppendUDP4(pb.pkt[:0], packet.IPv6HeaderLen, addrAFTR4, ip4.Src(), pcpServerPort, u.SrcPort, 64, resp)
	pb.pkt = b[:0]
	// From the address the B4 sent to: any of the AFTR's.
	out := packet.Encapsulate(b, packet.IPv6HeaderLen, outer.Dst, outer.Src, a.cfg.HopLimit)
	a.answerPCP(out, pb)
}

// pcpBuf is what answering one softwire PCP request needs, pooled so that
// the common request (a renewal) allocates nothing: the client identity
// handed to the server core and the handler, and the buffers the answer
// is built in. It goes back to the pool once the answer has left.
type pcpBuf struct {
	call pcpCall
	resp []byte // the PCP answer
	pkt  []byte // the answer in its softwire packet
}

var pcpBufs = sync.Pool{New: func() any {
	return &pcpBuf{
		resp: make([]byte, 0, pcp.MaxMessageLen),
		pkt:  make([]byte, 0, packet.IPv6HeaderLen+packet.IPv4HeaderLen+packet.UDPHeaderLen+pcp.MaxMessageLen),
	}
}}

func (pb *pcpBuf) release() {
	if pb != nil {
		pb.call = pcpCall{}
		pcpBufs.Put(pb)
	}
}

// grantedSet is the PortSet of a SUCCESS answer: in the request's pooled
// pcpCall for a B4's request, so that answering allocates nothing.
func grantedSet(client any, ps pcp.PortSet) *pcp.PortSet {
	if c, ok := client.(*pcpCall); ok {
		c.granted = ps
		return &c.granted
	}
	p := new(pcp.PortSet) // only here: &ps would put every ps on the heap
	*p = ps
	return p
}
