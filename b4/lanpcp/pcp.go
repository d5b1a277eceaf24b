package lanpcp

import (
	"errors"
	"math"
	"net/netip"
	"time"

	"github.com/lw4o6/lw4o6/b4/nat"
	"github.com/lw4o6/lw4o6/stack/pcp"
)

// pcpHandler is the Server as the PCP core's Handler and PeerHandler: the
// core has applied RFC 6887 §8.2 and the option checks; what is left is
// policy over the NAT.
type pcpHandler Server

const (
	protoTCP = 6
	protoUDP = 17
)

func fail(code pcp.ResultCode, lifetime uint32) pcp.Response {
	return pcp.Response{Result: code, Lifetime: lifetime}
}

// secs is d in whole seconds, at least 1 when d > 0, within uint32.
func secs(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	s := (d + time.Second - 1) / time.Second
	return uint32(min(int64(s), math.MaxUint32))
}

// clamp is a requested lifetime in [MinLifetime, MaxLifetime] (RFC 6887 §15).
func (s *Server) clamp(req uint32) time.Duration {
	return min(max(time.Duration(req)*time.Second, s.cfg.MinLifetime), s.cfg.MaxLifetime)
}

// internal4 is the mapping's internal address as IPv4: the NAT only maps
// IPv4 LAN hosts.
func internal4(r *pcp.Request) (netip.Addr, bool) {
	a := r.InternalIP.Unmap()
	return a, a.Is4() && !a.IsUnspecified() && !a.IsMulticast()
}

func owner(kind string, client netip.Addr) string { return kind + " " + client.String() }

func (h *pcpHandler) Map(r *pcp.Request) pcp.Response {
	s := (*Server)(h)
	md := r.Message.Map
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ext, ports, ok := s.table.External()
	if !ok || !s.provisioned {
		// RFC 6887 §7.4: the B4 has no port set (yet); short lifetime.
		return fail(pcp.NetworkFailure, 0)
	}
	ia, ok := internal4(r)
	if !ok {
		return fail(pcp.NotAuthorized, 0) // not a LAN host this NAT can map
	}
	del := r.Message.Lifetime == 0
	if md.Protocol == 0 || md.InternalPort == 0 || r.PortSet != nil {
		if del {
			// §15.1: deleting a wildcard or DMZ mapping that never existed.
			return pcp.Response{Result: pcp.Success}
		}
		// §11.3: all ports, or all protocols, on a port set shared with
		// the LAN's other flows cannot be met in its entirety.
		return fail(pcp.UnsuppProtocol, 0)
	}
	if md.Protocol != protoTCP && md.Protocol != protoUDP {
		return fail(pcp.UnsuppProtocol, 0) // §11.3: the NAT maps TCP and UDP
	}
	k := key{md.Protocol, netip.AddrPortFrom(ia, md.InternalPort)}
	rec := s.get(k, now)
	if del {
		return s.mapDelete(k, rec, md.Nonce, now)
	}
	// §11.3 item 1, §13.2: PREFER_FAILURE needs the suggested address too.
	if r.PreferFailure && !md.ExternalIP.IsUnspecified() && md.ExternalIP.Unmap() != ext {
		return fail(pcp.CannotProvideExternal, 0)
	}
	if rec != nil && rec.static {
		if r.PreferFailure && md.ExternalPort != rec.ext {
			return fail(pcp.CannotProvideExternal, 0)
		}
		// §11.3 item 2: the static mapping, lifetime 2^32-1.
		return pcp.Response{Result: pcp.Success, Lifetime: math.MaxUint32, ExternalIP: ext, ExternalPort: rec.ext, Options: echoDescription(r)}
	}
	if rec != nil && rec.mapOwned && !rec.natpmp && rec.mapNonce != md.Nonce {
		// §11.3 Simple Threat Model: another nonce cannot touch it.
		return fail(pcp.NotAuthorized, secs(rec.mapUntil.Sub(now)))
	}
	if rec == nil || !rec.mapOwned {
		perHost, total := s.quotaLeft(ia, now)
		if rec == nil && !total {
			return fail(pcp.NoResources, 0)
		}
		if !perHost {
			return fail(pcp.UserExQuota, 0)
		}
	}
	var filters []nat.Filter
	setFilters := len(r.Filters) > 0
	if setFilters {
		if rec != nil && rec.mapOwned {
			filters = append(filters, rec.filters...)
		}
		// §13.3: added to the existing ones in order; prefix length 0
		// removes every filter before it.
		for _, f := range r.Filters {
			if f.PrefixLen == 0 {
				filters = filters[:0]
				continue
			}
			filters = append(filters, natFilter(f))
		}
		if len(filters) > s.cfg.MaxFilters {
			return fail(pcp.ExcessiveRemotePeers, 0)
		}
	}
	lifetime := s.clamp(r.Message.Lifetime)
	mi, err := s.table.MapExplicit(nat.ExplicitRequest{
		Proto: md.Protocol, Internal: k.internal, Suggested: md.ExternalPort, Exact: r.PreferFailure,
		Lifetime: lifetime, SetFilters: setFilters, Filters: filters, Avoid: avoidPCP,
	})
	if err != nil {
		return fail(natResult(err), 0)
	}
	if !ports.Contains(mi.External) || avoidPCP(mi.External) {
		// Never answer a port outside the set or PCP's own: undo.
		s.table.RemoveExplicit(k.proto, k.internal)
		return fail(pcp.NoResources, 0)
	}
	if rec == nil || !rec.mapOwned || rec.natpmp {
		s.log.Info("LAN mapping", "by", "pcp", "client", r.Src, "proto", protoName(k.proto), "internal", k.internal, "external", netip.AddrPortFrom(ext, mi.External), "lifetime", lifetime)
	}
	rec = s.put(k)
	rec.ext, rec.mapOwned, rec.natpmp, rec.mapNonce = mi.External, true, false, md.Nonce
	rec.mapUntil = now.Add(lifetime)
	rec.owner = owner("pcp", r.Src)
	if setFilters {
		rec.filters = filters
	}
	if r.Description != nil {
		rec.desc = *r.Description
	}
	return pcp.Response{Result: pcp.Success, Lifetime: secs(lifetime), ExternalIP: ext, ExternalPort: mi.External, Options: echoDescription(r)}
}

// mapDelete serves a MAP with lifetime 0 (RFC 6887 §15, §15.1).
func (s *Server) mapDelete(k key, rec *record, nonce [12]byte, now time.Time) pcp.Response {
	switch {
	case rec != nil && rec.static:
		return fail(pcp.NotAuthorized, 0) // §15.1: a static mapping
	case rec != nil && rec.mapOwned:
		if !rec.natpmp && rec.mapNonce != nonce {
			return fail(pcp.NotAuthorized, secs(rec.mapUntil.Sub(now)))
		}
		left, err := s.table.RemoveExplicit(k.proto, k.internal)
		s.log.Info("LAN mapping deleted", "by", "pcp", "proto", protoName(k.proto), "internal", k.internal, "external", rec.ext)
		rec.mapOwned, rec.natpmp, rec.filters = false, false, nil
		if !rec.live(now) {
			delete(s.recs, k)
		}
		if err != nil {
			left = 0 // the NAT already dropped it
		}
		// §15: the mapping's own traffic still keeps it this long.
		return pcp.Response{Result: pcp.Success, Lifetime: secs(left)}
	}
	if _, ok := s.table.Mapping(k.proto, k.internal); ok {
		// §15.1: an outbound (implicit or PEER) mapping, or one made
		// through the B4's own API, is not MAP's to delete.
		return fail(pcp.NotAuthorized, 0)
	}
	return pcp.Response{Result: pcp.Success} // §15.1: nothing to delete
}

func (h *pcpHandler) Peer(r *pcp.Request) pcp.Response {
	s := (*Server)(h)
	md, pd := r.Message.Map, r.Message.Peer
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ext, ports, ok := s.table.External()
	if !ok || !s.provisioned {
		return fail(pcp.NetworkFailure, 0)
	}
	ia, ok := internal4(r)
	if !ok {
		return fail(pcp.NotAuthorized, 0)
	}
	if md.Protocol != protoTCP && md.Protocol != protoUDP {
		return fail(pcp.UnsuppProtocol, 0)
	}
	// §12.3: a remote peer the NAT would not send to is MALFORMED_REQUEST.
	ra := pd.RemoteIP.Unmap()
	if !ra.Is4() || ra.IsUnspecified() || ra.IsMulticast() || ra.IsLoopback() || ra == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return fail(pcp.MalformedRequest, 0)
	}
	k := key{md.Protocol, netip.AddrPortFrom(ia, md.InternalPort)}
	rec := s.get(k, now)
	if rec != nil && rec.peerOwned && rec.peerNonce != md.Nonce {
		return fail(pcp.NotAuthorized, secs(rec.peerUntil.Sub(now))) // §12.3
	}
	existing, exists := s.table.Mapping(k.proto, k.internal)
	if r.Message.Lifetime == 0 {
		// §15: a PEER cannot end a mapping sooner than its traffic would;
		// it learns what is left. The nonce is released.
		if rec != nil && rec.peerOwned {
			rec.peerOwned = false
			if !rec.live(now) {
				delete(s.recs, k)
			}
		}
		if !exists {
			return pcp.Response{Result: pcp.Success}
		}
		return pcp.Response{Result: pcp.Success, Lifetime: secs(existing.IdleLeft), ExternalIP: ext, ExternalPort: existing.External, Options: echoDescription(r)}
	}
	suggested := uint16(0)
	if !exists {
		// §12.3: a new mapping honours the suggestion or fails.
		if !md.ExternalIP.IsUnspecified() && md.ExternalIP.Unmap() != ext {
			return fail(pcp.CannotProvideExternal, 0)
		}
		suggested = md.ExternalPort
		if rec == nil {
			perHost, total := s.quotaLeft(ia, now)
			if !total {
				return fail(pcp.NoResources, 0)
			}
			if !perHost {
				return fail(pcp.UserExQuota, 0)
			}
		}
	}
	lifetime := s.clamp(r.Message.Lifetime)
	mi, err := s.table.Peer(k.proto, k.internal, netip.AddrPortFrom(ra, pd.RemotePort), suggested, lifetime, avoidPCP)
	if err != nil {
		return fail(natResult(err), 0)
	}
	if !ports.Contains(mi.External) {
		return fail(pcp.NoResources, 0)
	}
	rec = s.put(k)
	rec.ext, rec.peerOwned, rec.peerNonce = mi.External, true, md.Nonce
	rec.peerUntil = now.Add(mi.IdleLeft)
	if rec.owner == "" {
		rec.owner = owner("pcp", r.Src)
	}
	return pcp.Response{Result: pcp.Success, Lifetime: secs(mi.IdleLeft), ExternalIP: ext, ExternalPort: mi.External, Options: echoDescription(r)}
}

// echoDescription echoes a valid DESCRIPTION (RFC 7220 §3).
func echoDescription(r *pcp.Request) []pcp.Option {
	if r.Description == nil {
		return nil
	}
	return []pcp.Option{pcp.DescriptionOption(*r.Description)}
}

func natFilter(f pcp.Filter) nat.Filter {
	bits := int(f.PrefixLen)
	a := f.RemoteIP.Unmap()
	if a.Is4() {
		bits -= 96
	}
	p, err := a.Prefix(bits)
	if err != nil {
		p = netip.PrefixFrom(netip.IPv6Unspecified(), 128) // admits nothing the NAT sees
	}
	return nat.Filter{Prefix: p, Port: f.RemotePort}
}

// natResult maps a NAT refusal to its PCP result.
func natResult(err error) pcp.ResultCode {
	switch {
	case errors.Is(err, nat.ErrPortUnavailable):
		return pcp.CannotProvideExternal
	case errors.Is(err, nat.ErrNoExternal):
		return pcp.NetworkFailure
	}
	return pcp.NoResources // exhausted set, session bound, anything else (§7.4 catch-all)
}
