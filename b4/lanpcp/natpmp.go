package lanpcp

import (
	"encoding/binary"
	"errors"
	"math"
	"net/netip"
	"time"

	"github.com/lw4o6/lw4o6/b4/nat"
)

// NAT-PMP (RFC 6886), version 0, served from the same table as PCP.

// NAT-PMP opcodes and result codes (RFC 6886 §3.2, §3.3, §3.5).
const (
	pmpOpAddress = 0
	pmpOpUDP     = 1
	pmpOpTCP     = 2

	PMPSuccess          = 0
	PMPUnsuppVersion    = 1
	PMPNotAuthorized    = 2
	PMPNetworkFailure   = 3
	PMPOutOfResources   = 4
	PMPUnsuppOpcode     = 5
	pmpAddressRespLen   = 12
	pmpMapRequestLen    = 12
	pmpMapResponseLen   = 16
	pmpMaxUnsuppOpEcho  = 1100
	pmpResponseOpOffset = 128
)

// handleNATPMP serves one NAT-PMP request (req[0] == 0) from host.
func (s *Server) handleNATPMP(req []byte, host netip.Addr) []byte {
	op := req[1]
	if op >= pmpResponseOpOffset {
		s.c.dropMalformed.Add(1)
		return nil // §3.5: a response, not a request: silently ignored
	}
	switch op {
	case pmpOpAddress:
		ext, _, ok := s.table.External()
		s.mu.Lock()
		ok = ok && s.provisioned
		s.mu.Unlock()
		return s.natpmpAddress(ext, ok)
	case pmpOpUDP, pmpOpTCP:
		if len(req) < pmpMapRequestLen {
			s.c.dropMalformed.Add(1)
			return nil // no result code says "malformed"; the client retries
		}
		return s.natpmpMap(req, host)
	}
	// §3.5: unsupported opcode: the request returned with the top bit of
	// the opcode set and result 5.
	out := make([]byte, max(4, min(len(req), pmpMaxUnsuppOpEcho)))
	copy(out, req)
	out[1] |= pmpResponseOpOffset
	binary.BigEndian.PutUint16(out[2:], PMPUnsuppOpcode)
	return out
}

// natpmpAddress is the external address response (RFC 6886 §3.2), also the
// address-change announcement (§3.2.1). Unprovisioned, it is Network
// Failure (result 3) with the address 0.0.0.0.
func (s *Server) natpmpAddress(ext netip.Addr, provisioned bool) []byte {
	out := make([]byte, pmpAddressRespLen)
	out[1] = pmpResponseOpOffset + pmpOpAddress
	binary.BigEndian.PutUint32(out[4:], s.Epoch())
	if !provisioned || !ext.Is4() {
		binary.BigEndian.PutUint16(out[2:], PMPNetworkFailure)
		return out
	}
	a := ext.As4()
	copy(out[8:], a[:])
	return out
}

// natpmpMap serves a UDP (1) or TCP (2) mapping request (RFC 6886 §3.3,
// §3.4). NAT-PMP has no nonce: its mappings belong to the host. It cannot
// touch a static forward or a PCP mapping (which has a nonce): Not
// Authorized.
func (s *Server) natpmpMap(req []byte, host netip.Addr) []byte {
	op := req[1]
	proto := uint8(protoUDP)
	if op == pmpOpTCP {
		proto = protoTCP
	}
	iport := binary.BigEndian.Uint16(req[4:])
	suggested := binary.BigEndian.Uint16(req[6:])
	lifetimeReq := binary.BigEndian.Uint32(req[8:])
	answer := func(result uint16, ext uint16, lifetime uint32) []byte {
		out := make([]byte, pmpMapResponseLen)
		out[1] = pmpResponseOpOffset + op
		binary.BigEndian.PutUint16(out[2:], result)
		binary.BigEndian.PutUint32(out[4:], s.Epoch())
		binary.BigEndian.PutUint16(out[8:], iport)
		binary.BigEndian.PutUint16(out[10:], ext)
		binary.BigEndian.PutUint32(out[12:], lifetime)
		return out
	}
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ports, ok := s.table.External()
	if !ok || !s.provisioned {
		return answer(PMPNetworkFailure, 0, 0)
	}
	if !host.Is4() || host.IsUnspecified() {
		return answer(PMPNotAuthorized, 0, 0)
	}
	if lifetimeReq == 0 {
		return answer(s.natpmpDelete(proto, host, iport, now), 0, 0)
	}
	if iport == 0 {
		return answer(PMPNotAuthorized, 0, 0) // §3.3: internal port 0 only deletes
	}
	k := key{proto, netip.AddrPortFrom(host, iport)}
	rec := s.get(k, now)
	switch {
	case rec != nil && rec.static:
		return answer(PMPSuccess, rec.ext, math.MaxUint32)
	case rec != nil && rec.mapOwned && !rec.natpmp:
		return answer(PMPNotAuthorized, 0, 0) // a PCP mapping: its nonce owns it
	case rec == nil || !rec.mapOwned:
		perHost, total := s.quotaLeft(host, now)
		if !perHost || (rec == nil && !total) {
			return answer(PMPOutOfResources, 0, 0)
		}
	}
	lifetime := s.clamp(lifetimeReq)
	mi, err := s.table.MapExplicit(nat.ExplicitRequest{Proto: proto, Internal: k.internal, Suggested: suggested, Lifetime: lifetime, Avoid: avoidPCP})
	if err != nil {
		if errors.Is(err, nat.ErrNoExternal) {
			return answer(PMPNetworkFailure, 0, 0)
		}
		return answer(PMPOutOfResources, 0, 0)
	}
	if !ports.Contains(mi.External) || avoidPCP(mi.External) {
		s.table.RemoveExplicit(k.proto, k.internal)
		return answer(PMPOutOfResources, 0, 0)
	}
	if rec == nil || !rec.mapOwned {
		s.log.Info("LAN mapping", "by", "nat-pmp", "client", host, "proto", protoName(proto), "internal", k.internal, "external", mi.External, "lifetime", lifetime)
	}
	rec = s.put(k)
	rec.ext, rec.mapOwned, rec.natpmp, rec.mapNonce = mi.External, true, true, [12]byte{}
	rec.mapUntil, rec.owner = now.Add(lifetime), owner("nat-pmp", host)
	return answer(PMPSuccess, mi.External, secs(lifetime))
}

// natpmpDelete removes host's NAT-PMP mapping of iport, or all of them for
// proto when iport is 0 (RFC 6886 §3.4). Deleting what is not there is a
// success; a static forward or a PCP mapping is Not Authorized.
func (s *Server) natpmpDelete(proto uint8, host netip.Addr, iport uint16, now time.Time) uint16 {
	remove := func(k key, rec *record) {
		s.table.RemoveExplicit(k.proto, k.internal)
		s.log.Info("LAN mapping deleted", "by", "nat-pmp", "proto", protoName(k.proto), "internal", k.internal, "external", rec.ext)
		rec.mapOwned, rec.natpmp, rec.filters = false, false, nil
		if !rec.live(now) {
			delete(s.recs, k)
		}
	}
	if iport == 0 {
		for k := range s.recs {
			rec := s.get(k, now)
			if rec != nil && k.proto == proto && k.internal.Addr() == host && rec.mapOwned && rec.natpmp {
				remove(k, rec)
			}
		}
		return PMPSuccess
	}
	k := key{proto, netip.AddrPortFrom(host, iport)}
	rec := s.get(k, now)
	switch {
	case rec == nil || !rec.mapOwned && !rec.static:
		return PMPSuccess
	case rec.static || !rec.natpmp:
		return PMPNotAuthorized
	}
	remove(k, rec)
	return PMPSuccess
}
