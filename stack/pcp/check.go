package pcp

import (
	"fmt"
	"net/netip"
)

// check applies the option and opcode-field rules to a parsed request and
// builds the Request for the handler. Options are processed in order
// (RFC 6887 §7.3), so the first bad one decides the result.
func (s *Server) check(st *handleState, src netip.Addr, client any) (*Request, error) {
	m, r := &st.m, &st.r
	*r = Request{Message: m, Src: src, Client: client, InternalIP: src, Filters: st.filters[:0]}
	isMap, isPeer := m.Opcode == OpMap, m.Opcode == OpPeer
	var portSetSeen bool
	for _, o := range m.Options {
		switch o.Code {
		case OptThirdParty:
			if !isMap && !isPeer {
				return nil, fmt.Errorf("%w: %v in %v", ErrOptionNotAllowed, o.Code, m.Opcode)
			}
			// §13.1: refused (default) is UNSUPP_OPTION; checked before the
			// address so that a server that refuses it never interprets it.
			if s.cfg.ThirdPartyAllowed == nil || !s.cfg.ThirdPartyAllowed(client) {
				return nil, ErrThirdPartyDenied
			}
			a, _ := o.ThirdParty() // Parse checked the length
			if a == src.Unmap().WithZone("") {
				return nil, fmt.Errorf("%w: %v", ErrThirdPartySelf, a)
			}
			r.ThirdParty, r.InternalIP = a, a
		case OptPreferFailure:
			switch {
			case isPeer:
				return nil, ErrPeerPreferFailure // §12.1
			case !isMap:
				return nil, fmt.Errorf("%w: %v in %v", ErrOptionNotAllowed, o.Code, m.Opcode)
			case m.Lifetime == 0 || m.Map.ExternalPort == 0:
				return nil, ErrPreferFailure // §11.3, §13.2
			}
			r.PreferFailure = true
		case OptFilter:
			if !isMap {
				return nil, fmt.Errorf("%w: %v in %v", ErrOptionNotAllowed, o.Code, m.Opcode)
			}
			f, _ := o.Filter()
			if m.Lifetime == 0 {
				return nil, ErrFilterDelete // §13.3
			}
			if !f.Valid() {
				return nil, fmt.Errorf("%w: /%d for %v", ErrFilterPrefix, f.PrefixLen, f.RemoteIP)
			}
			r.Filters = append(r.Filters, f)
		case OptPortSet:
			if !isMap {
				continue // optional and MAP-only (RFC 7753 §4): ignored
			}
			portSetSeen = true
			p, _ := o.PortSet()
			if err := checkPortSet(p, m.Map.InternalPort); err != nil {
				return nil, err
			}
			if p.Size > 1 { // RFC 7753 §4.2: size 1 is a plain MAP
				st.portSet = p
				r.PortSet = &st.portSet
			}
		case OptDescription:
			if !isMap && !isPeer {
				continue
			}
			if d, err := o.Description(); err == nil {
				r.Description = &d
			} // RFC 7220 §3: an invalid one is ignored, not echoed
		default:
			if o.Code.Mandatory() {
				return nil, fmt.Errorf("%w: %v", ErrMandatoryOption, o.Code)
			}
			// optional and unknown or unprocessed: ignored, not echoed
		}
	}
	if len(r.Filters) == 0 {
		r.Filters = nil
	}
	if portSetSeen && r.PreferFailure {
		return nil, ErrPortSetPrefer // RFC 7753 §4.1, §4.2
	}
	switch {
	case isMap && m.Map.Protocol == 0 && m.Map.InternalPort != 0 && r.PortSet == nil:
		// §11.3, §15.1; with PORT_SET the RFC 7753 §5.2 form is accepted
		// (PROTOCOL.md §8 item 1).
		return nil, ErrProtocolPort
	case isPeer && (m.Map.Protocol == 0 || m.Map.InternalPort == 0 || m.Peer.RemotePort == 0):
		return nil, ErrPeerZero // §12.1
	}
	return r, nil
}

// checkPortSet applies RFC 7753 §4 to a requested set. The rules are
// applied whatever the lifetime: §4 makes Size 0 and a First Internal Port
// other than the Internal Port wrong in any request, and a refresh or
// delete must carry the same option (§4.4).
func checkPortSet(p PortSet, internalPort uint16) error {
	switch {
	case p.Size == 0:
		return ErrPortSetSize
	case p.FirstInternalPort != internalPort:
		return fmt.Errorf("%w: %d, internal port %d", ErrPortSetFirst, p.FirstInternalPort, internalPort)
	}
	if _, ok := p.Last(); !ok {
		// RFC 7753 is silent; PROTOCOL.md §2.3 decides MALFORMED_OPTION.
		return fmt.Errorf("%w: first %d size %d", ErrPortSetRange, p.FirstInternalPort, p.Size)
	}
	return nil
}
