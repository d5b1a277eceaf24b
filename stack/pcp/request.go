package pcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
	"unicode/utf8"
)

// MapRequest is a MAP request (RFC 6887 §11.1, §11.2).
type MapRequest struct {
	Protocol     uint8  // 0 = all protocols
	InternalPort uint16 // 0 = all ports
	// SuggestedIP and SuggestedPort: the zero Addr means no preference,
	// sent as the all-zeros address of the ClientIP family (§5, §11.1);
	// pass 0.0.0.0 or :: to choose the family. A renewal suggests the
	// assigned ones (§11.2.1). A delete sends zeros of the same family
	// whatever is given (§15.1).
	SuggestedIP   netip.Addr
	SuggestedPort uint16
	Lifetime      uint32 // seconds; 0 deletes

	// PortSet asks for a set (RFC 7753); its FirstInternalPort is set to
	// InternalPort, as §4 requires.
	PortSet       *PortSet
	ThirdParty    netip.Addr // zero = none
	Filters       []Filter
	PreferFailure bool
	Description   string   // "" = none
	Options       []Option // further options, appended as given
}

// Map sends a MAP request and waits for its response, retransmitting as
// RFC 6887 §8.1.1 says (the same octets each time) until an answer comes or
// ctx ends. On SUCCESS it returns the Mapping; on an error result a
// *ResultError, which the client remembers: a repeat within its lifetime
// fails at once without sending (§8.3, §11.4).
func (c *Client) Map(ctx context.Context, req MapRequest) (*Mapping, error) {
	msg, err := c.mapMessage(req)
	if err != nil {
		return nil, err
	}
	b, err := Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	key := liveKey{req.Protocol, req.InternalPort, req.ThirdParty.Unmap()}
	c.mu.Lock()
	now := c.clock.Now()
	isNew := req.Lifetime > 0 && !now.Before(c.live[key]) // zero Time: not live
	held := c.holds.check(string(b), isNew, now)
	c.mu.Unlock()
	if held != nil {
		return nil, held
	}

	d := msg.Map
	match := func(m *Message) bool {
		r := m.Map
		if r == nil || r.Nonce != d.Nonce || r.Protocol != d.Protocol || r.InternalPort != d.InternalPort {
			return false
		}
		tp, hasTP, err := m.ThirdParty()
		if req.ThirdParty.IsValid() != (hasTP || err != nil) || hasTP && tp != req.ThirdParty.Unmap() {
			return false // §11.4: the internal address must match too
		}
		// §13.2: with PREFER_FAILURE a success must grant exactly the
		// suggestion; otherwise it is a Mapping Update sent earlier.
		return !req.PreferFailure || m.Result != Success ||
			r.ExternalPort == d.ExternalPort && (d.ExternalIP.IsUnspecified() || r.ExternalIP == d.ExternalIP)
	}
	m, err := c.exchange(ctx, b, &pending{opcode: OpMap, match: match})
	if err != nil {
		return nil, err
	}
	now = c.clock.Now()
	if m.Result != Success {
		e := newResultError(m.Result, m.Lifetime, m)
		c.mu.Lock()
		c.holds.record(string(b), e, req.Lifetime == 0, now)
		c.mu.Unlock()
		return nil, e
	}
	mp := &Mapping{
		ExternalIP:   m.Map.ExternalIP,
		ExternalPort: m.Map.ExternalPort,
		Lifetime:     capLifetime(m.Lifetime),
		Epoch:        m.Epoch,
		Received:     now,
		Response:     m,
	}
	if ps, ok, _ := m.PortSet(); ok && ps.Size > 1 {
		mp.PortSet = &ps
	}
	c.mu.Lock()
	if mp.Lifetime > 0 {
		c.live[key] = mp.Expiry()
	} else {
		delete(c.live, key)
	}
	c.mu.Unlock()
	return mp, nil
}

// Announce sends an ANNOUNCE request and returns the server's Epoch
// (RFC 6887 §14.1.2). The response also goes through the Epoch check.
func (c *Client) Announce(ctx context.Context) (uint32, error) {
	b, err := Marshal(&Message{Opcode: OpAnnounce, ClientIP: c.clientIP})
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	held := c.holds.check(string(b), false, c.clock.Now())
	c.mu.Unlock()
	if held != nil {
		return 0, held
	}
	m, err := c.exchange(ctx, b, &pending{opcode: OpAnnounce, match: func(*Message) bool { return true }})
	if err != nil {
		return 0, err
	}
	if m.Result != Success {
		e := newResultError(m.Result, m.Lifetime, m)
		c.mu.Lock()
		c.holds.record(string(b), e, false, c.clock.Now())
		c.mu.Unlock()
		return 0, e
	}
	return m.Epoch, nil
}

// exchange sends b and retransmits it (§8.1.1) until p is answered, ctx
// ends or Run stops.
func (c *Client) exchange(ctx context.Context, b []byte, p *pending) (*Message, error) {
	p.ch = make(chan reply, 1)
	c.mu.Lock()
	c.pending[p] = struct{}{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, p)
		c.mu.Unlock()
	}()
	var rt time.Duration
	for {
		select {
		case <-c.stopped:
			return nil, ErrStopped
		default:
		}
		if _, err := c.conn.Write(b); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			c.log.Debug("pcp: send failed, will retransmit", "err", err)
		}
		rt = nextRT(rt, c.rand())
		timer := c.clock.After(rt)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.stopped:
			return nil, ErrStopped
		case r := <-p.ch:
			if r.err != nil {
				return nil, r.err
			}
			return r.m, nil
		case <-timer:
		}
	}
}

// mapMessage builds the request, refusing what the RFCs forbid a client
// to send.
func (c *Client) mapMessage(req MapRequest) (*Message, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidRequest}, a...)...)
	}
	switch {
	case req.PreferFailure && req.PortSet != nil:
		return nil, bad("PREFER_FAILURE with PORT_SET (RFC 7753 §4.1)")
	case req.PreferFailure && (req.SuggestedPort == 0 || req.Lifetime == 0):
		return nil, bad("PREFER_FAILURE needs a suggested port and a lifetime (RFC 6887 §13.2)")
	case len(req.Filters) > 0 && req.Lifetime == 0:
		return nil, bad("FILTER in a delete (RFC 6887 §13.3)")
	case req.Protocol == 0 && req.InternalPort != 0 && req.PortSet == nil:
		return nil, bad("protocol 0 needs internal port 0 (RFC 6887 §11.1)")
	case req.ThirdParty.IsValid() && req.ThirdParty.Unmap() == c.clientIP:
		return nil, bad("THIRD_PARTY equal to the client address (RFC 6887 §13.1)")
	case len(req.Description) > MaxDescriptionLen || !utf8.ValidString(req.Description):
		return nil, bad("DESCRIPTION not UTF-8 or over 1016 octets (RFC 7220 §2)")
	}
	d := &MapData{
		Nonce:        c.nonce,
		Protocol:     req.Protocol,
		InternalPort: req.InternalPort,
		ExternalPort: req.SuggestedPort,
		ExternalIP:   req.SuggestedIP,
	}
	if req.Lifetime == 0 { // §15.1: a delete carries no suggestion
		d.ExternalPort = 0
		if d.ExternalIP.IsValid() {
			d.ExternalIP = unspecified(d.ExternalIP)
		}
	}
	if !d.ExternalIP.IsValid() {
		d.ExternalIP = netip.IPv4Unspecified() // ::ffff:0.0.0.0 (§5)
		if c.clientIP.Is6() {
			d.ExternalIP = netip.IPv6Unspecified()
		}
	}
	m := &Message{Opcode: OpMap, Lifetime: req.Lifetime, ClientIP: c.clientIP, Map: d}
	if req.ThirdParty.IsValid() {
		m.Options = append(m.Options, ThirdPartyOption(req.ThirdParty))
	}
	if req.PreferFailure {
		m.Options = append(m.Options, PreferFailureOption())
	}
	for _, f := range req.Filters {
		if !f.Valid() {
			return nil, bad("FILTER prefix length %d for %v (RFC 6887 §13.3)", f.PrefixLen, f.RemoteIP)
		}
		m.Options = append(m.Options, FilterOption(f))
	}
	if ps := req.PortSet; ps != nil {
		p := *ps
		p.FirstInternalPort = req.InternalPort
		if err := checkPortSet(p, req.InternalPort); err != nil {
			return nil, bad("%v", err)
		}
		m.Options = append(m.Options, PortSetOption(p))
	}
	if req.Description != "" {
		m.Options = append(m.Options, DescriptionOption(req.Description))
	}
	m.Options = append(m.Options, req.Options...)
	return m, nil
}

func unspecified(a netip.Addr) netip.Addr {
	if a.Unmap().Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}
