package nat

// The packet path: every branch a packet can take through the NAT is in
// this file. Each direction parses and validates without the lock, looks up
// (and creates) state under the lock, then rewrites the packet without it.
// Every error is returned before the first byte of the packet is written.

// Outbound translates, in place, an IPv4 packet from the LAN (pkt holds the
// whole datagram from its IPv4 header; bytes past the total length are
// ignored): the source address becomes the public address and the source
// port (ICMP echo identifier) a port of the set, through the internal
// endpoint's mapping, created if needed. An ICMP error from the LAN is
// translated by the datagram it quotes (RFC 5508 REQ-5).
//
// When the packet is addressed to the public address its destination is
// translated too, as Inbound would with the translated source as the remote
// endpoint (hairpinning, RFC 4787 REQ-9): hairpin is then true and the
// caller must deliver pkt on the LAN rather than into the softwire.
//
// On error pkt is unchanged and err is one of the sentinels, counted in
// Stats().DropOut.
func (t *Table) Outbound(pkt []byte) (hairpin bool, err error) {
	hairpin, err = t.outbound(pkt)
	if err != nil {
		t.c.count(dirOut, err)
		return false, err
	}
	t.c.out.Add(1)
	if hairpin {
		t.c.hairpin.Add(1)
	}
	return hairpin, nil
}

// Inbound translates, in place, an IPv4 packet from the Internet addressed to
// the public address back to the internal endpoint of the mapping of its
// destination port, if the filter admits its source (RFC 4787 §5). An ICMP
// error is translated by the datagram it quotes (RFC 5508 REQ-4).
//
// On error pkt is unchanged and err is one of the sentinels, counted in
// Stats().DropIn.
func (t *Table) Inbound(pkt []byte) error {
	err := t.inbound(pkt)
	if err != nil {
		t.c.count(dirIn, err)
		return err
	}
	t.c.in.Add(1)
	return nil
}

func (t *Table) outbound(b []byte) (bool, error) {
	p, err := parseIPv4(b)
	if err != nil {
		return false, err
	}
	pi, ok := protoIndex(p.proto)
	if !ok {
		return false, ErrUnsupported
	}
	if pi == iICMP {
		if err := p.checkICMP(); err != nil {
			return false, err
		}
		switch typ := p.l4[0]; {
		case typ == icmpEchoRequest:
		case isICMPError(typ):
			return t.outboundError(&p)
		default:
			// Echo replies included: no inbound echo request is ever
			// translated (RFC 6346 §5.3.2), so no LAN host answers one.
			return false, ErrUnsupported
		}
	}
	sport, dport, flags, err := p.transport()
	if err != nil {
		return false, err
	}
	rport := dport
	if pi == iICMP {
		rport = 0
	}
	now := t.clock()

	t.mu.Lock()
	if !t.provisioned {
		t.mu.Unlock()
		return false, ErrNoExternal
	}
	ext := t.ext
	// The public address is shared with other B4s (RFC 7596): only a
	// destination port of our own set comes back to our LAN; any other
	// port belongs to another B4 and goes out, for the AFTR to hairpin.
	hairpin := p.dst == ext && (pi == iICMP || t.contains(dport))
	var xport uint16
	if hairpin && pi == iICMP {
		err = ErrUnsupported // an echo request to the public address
	} else {
		xport, err = t.outSession(pi, p.src, sport, p.dst, rport, flags, now)
	}
	var iaddr uint32
	var iport uint16
	if err == nil && hairpin {
		iaddr, iport, err = t.inSession(pi, dport, ext, xport, flags, now)
	}
	t.mu.Unlock()
	if err != nil {
		return false, err
	}

	rewrite(&p, true, ext, xport)
	if hairpin {
		rewrite(&p, false, iaddr, iport)
	}
	return hairpin, nil
}

func (t *Table) inbound(b []byte) error {
	p, err := parseIPv4(b)
	if err != nil {
		return err
	}
	pi, ok := protoIndex(p.proto)
	if !ok {
		return ErrUnsupported
	}
	if pi == iICMP {
		if err := p.checkICMP(); err != nil {
			return err
		}
		switch typ := p.l4[0]; {
		case typ == icmpEchoReply:
		case isICMPError(typ):
			return t.inboundError(&p)
		default:
			return ErrUnsupported // echo requests: RFC 6346 §5.3.2
		}
	}
	sport, dport, flags, err := p.transport()
	if err != nil {
		return err
	}
	rport := sport
	if pi == iICMP {
		rport = 0
	}
	now := t.clock()

	t.mu.Lock()
	switch {
	case !t.provisioned:
		err = ErrNoExternal
	case p.dst != t.ext:
		err = ErrNotExternal
	}
	var iaddr uint32
	var iport uint16
	if err == nil {
		iaddr, iport, err = t.inSession(pi, dport, p.src, rport, flags, now)
	}
	t.mu.Unlock()
	if err != nil {
		return err
	}

	rewrite(&p, false, iaddr, iport)
	return nil
}

// outboundError translates an ICMP error from the LAN about a datagram that
// came in through a mapping (from remote e.src:e.sport to internal
// e.dst:e.dport): the quoted destination reverts to the public address and
// external port, the outer source becomes the public address
// (RFC 5508 REQ-5a, 5c). Addressed to the public address, it is hairpinned
// (RFC 5508 REQ-7): the quoted source, our own external endpoint, reverts to
// the internal one, who becomes the outer destination (REQ-7a).
func (t *Table) outboundError(p *ipv4) (bool, error) {
	if p.more {
		return false, ErrFragment
	}
	e, err := parseEmbedded(p.l4)
	if err != nil {
		return false, err
	}
	pi, _ := protoIndex(e.proto)
	rport := e.sport
	if pi == iICMP {
		if e.icmpType != icmpEchoReply {
			return false, ErrUnsupported
		}
		rport = 0
	}
	now := t.clock()

	t.mu.Lock()
	if !t.provisioned {
		t.mu.Unlock()
		return false, ErrNoExternal
	}
	ext := t.ext
	var xport uint16
	m := t.byInt[pi][intKey(e.dst, e.dport)]
	if m == nil {
		err = ErrNoMapping
	} else if _, err = t.sessionFor(pi, m.ext, e.src, rport, now); err == nil {
		xport = m.ext
	}
	hairpin := err == nil && p.dst == ext && t.contains(e.sport)
	var h *mapping
	if hairpin {
		switch {
		case pi == iICMP:
			err = ErrUnsupported
		case e.src != ext:
			err = ErrNoMapping
		default:
			h, err = t.sessionFor(pi, e.sport, ext, xport, now)
		}
	}
	var iaddr uint32
	var iport uint16
	if h != nil {
		iaddr, iport = h.intAddr, h.intPort
	}
	t.mu.Unlock()
	if err != nil {
		return false, err
	}

	rewriteError(p, &e, false, ext, xport)
	rewriteOuter(p, true, ext)
	if hairpin {
		rewriteError(p, &e, true, iaddr, iport)
		rewriteOuter(p, false, iaddr)
	}
	return hairpin, nil
}

// inboundError translates an ICMP error from the Internet about a datagram
// that went out through a mapping (from e.src:e.sport, the public address
// and an external port, to remote e.dst:e.dport): the quoted source reverts
// to the internal endpoint, who becomes the outer destination
// (RFC 5508 REQ-4a, 4c). Type and code are kept (REQ-4b).
func (t *Table) inboundError(p *ipv4) error {
	if p.more {
		return ErrFragment
	}
	e, err := parseEmbedded(p.l4)
	if err != nil {
		return err
	}
	pi, _ := protoIndex(e.proto)
	rport := e.dport
	if pi == iICMP {
		if e.icmpType != icmpEchoRequest {
			return ErrUnsupported
		}
		rport = 0
	}
	now := t.clock()

	t.mu.Lock()
	var m *mapping
	switch {
	case !t.provisioned:
		err = ErrNoExternal
	case p.dst != t.ext:
		err = ErrNotExternal
	case e.src != t.ext:
		err = ErrNoMapping
	default:
		m, err = t.sessionFor(pi, e.sport, e.dst, rport, now)
	}
	var iaddr uint32
	var iport uint16
	if m != nil {
		iaddr, iport = m.intAddr, m.intPort
	}
	t.mu.Unlock()
	if err != nil {
		return err
	}

	rewriteError(p, &e, true, iaddr, iport)
	rewriteOuter(p, false, iaddr)
	return nil
}
