package b4

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/lw4o6/lw4o6/b4/nat"
	"github.com/lw4o6/lw4o6/stack/pcp"
	"github.com/lw4o6/lw4o6/stack/portset"
)

// A port pool that follows demand (docs/port-sets.md): when the NAT's
// mappings — implicit sessions' ports and explicit forwards — reach GrowAt
// of the ports the B4 holds, or a port allocation fails, the B4 asks the
// AFTR for one more set (a MAP with PORT_SET whose Internal Port, 2 and up,
// names the set: RFC 7753 §4.1), up to MaxSets; it renews each such set
// like the first and gives back (MAP lifetime 0) a set that stays unused
// for ShrinkAfter.

// SetStatus is one port set the B4 holds.
type SetStatus struct {
	// Number names the set to the AFTR: 0 the first, 2.. the ones added
	// under load (docs/port-sets.md).
	Number  uint16
	IPv4    netip.Addr
	Ports   portset.Range
	Expires time.Time
	// Used is the number of NAT mappings on the set's ports (the fullest
	// protocol's).
	Used int
}

// extraSet is a set the pool loop added.
type extraSet struct {
	SetStatus
	renewAt   time.Time
	idleSince time.Time // zero while mappings use it
}

// poolRequestTimeout bounds one exchange of the pool loop: a growth that
// gets no answer is dropped, not waited for, since the need may be gone.
var poolRequestTimeout = 10 * time.Second

// pool is the state of the pool loop.
type pool struct {
	b        *B4
	client   *pcp.Client
	sets     []*extraSet
	lastFail uint64    // nat.Stats.AllocFailures at the last look
	backoff  time.Time // no growth before (RFC 6887 §8.1: an error's lifetime)
	refusals int       // consecutive unusable answers, for back-off
}

// poolInterval is how often the pool loop looks at the NAT: often enough to
// grow before many flows are refused, and a fraction of ShrinkAfter.
func poolInterval(shrinkAfter time.Duration) time.Duration {
	return min(max(shrinkAfter/4, 10*time.Millisecond), time.Second)
}

// runPool is the pool loop; it returns when ctx ends. It shares the
// provisioning's PCP client: requests are told apart by Internal Port.
func (b *B4) runPool(ctx context.Context, client *pcp.Client) {
	if b.cfg.MaxSets <= 1 {
		return
	}
	p := &pool{b: b, client: client}
	t := time.NewTicker(poolInterval(b.cfg.ShrinkAfter))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.tick(ctx)
		case <-b.poolLost:
			// The first set's binding was lost (ICMPv6 1/5): the AFTR
			// most likely lost the added ones too. Renew them at once,
			// suggesting the same sets (RFC 6887 §11.2.1), once the first
			// set is back; the NAT kept what it held.
			for _, s := range p.sets {
				s.renewAt = time.Time{}
			}
		}
	}
}

// tick runs one round: follow the first set, renew, grow, shrink.
func (p *pool) tick(ctx context.Context) {
	b := p.b
	addr, first, ok := b.nat.External()
	if !b.provisioned.Load() || !ok {
		// The first set is being asked for again (a lost binding): the
		// added sets wait for it, and are renewed once it is back (they
		// are released below if it comes back on another address).
		return
	}
	now := b.now()
	for _, s := range slices.Clone(p.sets) {
		if s.IPv4 != addr {
			// The first set moved: an added set on the old address is of
			// no use to the NAT (docs/port-sets.md).
			p.release(ctx, s, "first set moved to another address")
			continue
		}
		if err := b.nat.AddSet(addr, s.Ports); err != nil {
			// SetExternal dropped it with a new first set; it could not
			// come back.
			p.release(ctx, s, err.Error())
			continue
		}
		if !now.Before(s.renewAt) {
			p.renew(ctx, s, now)
		}
	}
	st := b.nat.Stats()
	fail := st.AllocFailures > p.lastFail
	p.lastFail = st.AllocFailures
	high := float64(st.PortsUsed) >= b.cfg.GrowAt*float64(st.Ports)
	if (high || fail) && 1+len(p.sets) < b.cfg.MaxSets && !now.Before(p.backoff) {
		p.grow(ctx, addr, first.Len(), st.PortsUsed, st.Ports)
		st = b.nat.Stats()
	}
	p.shrink(ctx, st.Sets, st.PortsUsed, st.Ports, now)
	p.publish()
}

// number is the lowest set number not in use (docs/port-sets.md: 2 up).
func (p *pool) number() uint16 {
	for n := uint16(2); ; n++ {
		if !slices.ContainsFunc(p.sets, func(s *extraSet) bool { return s.Number == n }) {
			return n
		}
	}
}

// request is the MAP of set n, of size ports, suggesting ip and first.
func (p *pool) request(n uint16, size int, ip netip.Addr, first uint16, lifetime uint32) pcp.MapRequest {
	// Internal Port + Size - 1 stays within 65535 (PROTOCOL.md §2.3).
	size = min(size, 65536-int(n))
	return pcp.MapRequest{
		Protocol:      0, // every port-aware protocol (RFC 7596 §3), as the first set
		InternalPort:  n,
		SuggestedIP:   ip,
		SuggestedPort: first,
		Lifetime:      lifetime,
		PortSet:       &pcp.PortSet{Size: uint16(size)},
	}
}

func (p *pool) lifetime() uint32 { return uint32(p.b.cfg.Lifetime / time.Second) }

// grow asks for one more set, the first set's size, on its address.
func (p *pool) grow(ctx context.Context, addr netip.Addr, size, used, held int) {
	b := p.b
	n := p.number()
	rctx, cancel := context.WithTimeout(ctx, poolRequestTimeout)
	defer cancel()
	m, err := p.client.Map(rctx, p.request(n, size, addr, 0, p.lifetime()))
	now := b.now()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		wait := 5 * time.Second
		var re *pcp.ResultError
		if errors.As(err, &re) {
			// RFC 6887 §8.1, §11.4: not again within the error's lifetime.
			wait = max(time.Duration(re.Lifetime)*time.Second, time.Second)
			b.count.Count(cPoolRefused, 0)
		}
		p.backoff = now.Add(wait)
		b.log.Info("port pool: no additional set", "set", n, "used", used, "held", held, "err", err, "retry-in", wait)
		return
	}
	set, err := validateGrant(m, uint16(min(size, 65535)))
	s := &extraSet{SetStatus: SetStatus{Number: n, IPv4: m.ExternalIP, Ports: set, Expires: m.Expiry()}, renewAt: m.RenewAt(nil)}
	switch {
	case err != nil:
	case m.ExternalIP != addr:
		// One public address per NAT (docs/port-sets.md): refused, given
		// back at once, counted.
		b.count.Count(cPoolOtherAddress, 0)
		err = errors.New("set granted on another address than the first set's " + addr.String())
	default:
		err = b.nat.AddSet(addr, set)
	}
	if err != nil {
		p.refusals++
		p.backoff = now.Add(min(time.Second<<min(p.refusals, 8), max(b.cfg.ShrinkAfter, time.Second)))
		b.log.Warn("port pool: unusable additional set, giving it back", "set", n, "ipv4", m.ExternalIP, "ports", set, "err", err)
		p.release(ctx, s, "unusable")
		return
	}
	p.refusals = 0
	p.sets = append(p.sets, s)
	b.count.Count(cPoolGrow, 0)
	b.log.Info("port pool grown", "set", n, "ipv4", addr, "ports", set, "used", used, "held", held+set.Len(), "sets", 1+len(p.sets))
}

// renew renews one added set (RFC 6887 §11.2.1, RFC 7753 §4.4: with its
// PORT_SET). A refusal keeps the set until it expires.
func (p *pool) renew(ctx context.Context, s *extraSet, now time.Time) {
	b := p.b
	rctx, cancel := context.WithTimeout(ctx, max(s.Expires.Sub(now), time.Second))
	defer cancel()
	m, err := p.client.Map(rctx, p.request(s.Number, s.Ports.Len(), s.IPv4, s.Ports.First, p.lifetime()))
	now = b.now()
	if err == nil {
		set, serr := validateGrant(m, uint16(min(s.Ports.Len(), 65535)))
		if serr == nil && m.ExternalIP == s.IPv4 && set == s.Ports {
			s.Expires, s.renewAt = m.Expiry(), m.RenewAt(nil)
			b.log.Debug("port pool: set renewed", "set", s.Number, "ports", s.Ports)
			return
		}
		// The AFTR gave another set under the same number: ours is gone.
		b.log.Warn("port pool: renewal moved the set, giving it back", "set", s.Number, "was", s.Ports, "got", set, "ipv4", m.ExternalIP)
		p.release(ctx, s, "moved on renewal")
		return
	}
	if ctx.Err() != nil {
		return
	}
	if !now.Before(s.Expires) {
		b.nat.RemoveSet(s.Ports)
		p.drop(s)
		b.log.Info("port pool: added set expired without renewal", "set", s.Number, "ports", s.Ports, "err", err)
		return
	}
	s.renewAt = now.Add(min(5*time.Second, s.Expires.Sub(now)/2))
	var re *pcp.ResultError
	if errors.As(err, &re) {
		s.renewAt = now.Add(max(time.Duration(re.Lifetime)*time.Second, time.Second))
	}
	b.log.Warn("port pool: renewal failed", "set", s.Number, "err", err, "retry-at", s.renewAt)
}

// shrink gives back one added set that no mapping used for ShrinkAfter,
// if the B4 stays below the high-water mark without it.
func (p *pool) shrink(ctx context.Context, usage []nat.SetUsage, used, held int, now time.Time) {
	b := p.b
	var victim *extraSet
	for _, s := range p.sets {
		s.Used = usedOf(usage, s.Ports)
		switch {
		case s.Used > 0:
			s.idleSince = time.Time{}
		case s.idleSince.IsZero():
			s.idleSince = now
		case victim == nil && now.Sub(s.idleSince) >= b.cfg.ShrinkAfter &&
			float64(used) < b.cfg.GrowAt*float64(held-s.Ports.Len()):
			victim = s
		}
	}
	if victim == nil {
		return
	}
	b.count.Count(cPoolShrink, 0)
	b.log.Info("port pool shrunk", "set", victim.Number, "ports", victim.Ports, "idle", now.Sub(victim.idleSince),
		"used", used, "held", held-victim.Ports.Len(), "sets", len(p.sets))
	p.release(ctx, victim, "idle")
}

// release takes s out of the NAT (flushing what used its ports, RFC 7596
// §5.1) and deletes it at the AFTR (MAP lifetime 0, RFC 6887 §15, with
// PORT_SET, RFC 7753 §4.4). A delete that gets no answer is left to the
// set's lifetime.
func (p *pool) release(ctx context.Context, s *extraSet, why string) {
	b := p.b
	b.nat.RemoveSet(s.Ports)
	p.drop(s)
	rctx, cancel := context.WithTimeout(ctx, poolRequestTimeout)
	defer cancel()
	size := max(s.Ports.Len(), 2)
	if _, err := p.client.Map(rctx, p.request(s.Number, size, netip.Addr{}, 0, 0)); err != nil && ctx.Err() == nil {
		b.log.Warn("port pool: delete failed; the set will expire", "set", s.Number, "why", why, "err", err)
		return
	}
	b.log.Debug("port pool: set given back", "set", s.Number, "ports", s.Ports, "why", why)
}

// usedOf is the use the NAT reports for set r.
func usedOf(usage []nat.SetUsage, r portset.Range) int {
	for _, u := range usage {
		if u.Ports == portset.Set(r) {
			return u.Used
		}
	}
	return 0
}

func (p *pool) drop(s *extraSet) {
	p.sets = slices.DeleteFunc(p.sets, func(x *extraSet) bool { return x == s })
}

// sets lists the first set and the added ones with their use, for Status.
func (b *B4) sets(s *Status) {
	if !s.Provisioned {
		return
	}
	s.Sets = append(s.Sets, SetStatus{IPv4: s.PublicIPv4, Ports: s.Ports, Expires: s.Expires, Used: usedOf(s.NAT.Sets, s.Ports)})
	b.mu.Lock()
	extra := b.extraSets
	b.mu.Unlock()
	for _, x := range extra {
		x.Used = usedOf(s.NAT.Sets, x.Ports)
		s.Sets = append(s.Sets, x)
	}
}

// publish puts the added sets into Status; a change is a status change.
func (p *pool) publish() {
	out := make([]SetStatus, len(p.sets))
	for i, s := range p.sets {
		out[i] = s.SetStatus
	}
	b := p.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if slices.Equal(out, b.extraSets) {
		return
	}
	b.extraSets = out
	close(b.change) // a status change: wake Changed's waiters
	b.change = make(chan struct{})
}
