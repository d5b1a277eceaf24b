package b4

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/lw4o6/lw4o6/stack/pcp"
	"github.com/lw4o6/lw4o6/stack/portset"
)

// Run provisions the B4 and keeps it provisioned until ctx is done: MAP with
// PORT_SET to 192.0.0.1 through the softwire (PROTOCOL.md §8 item 1),
// renewal at 1/2-5/8 of the lifetime (RFC 6887 §11.2.1), and provisioning
// again after an ICMPv6 1/5 (RFC 7596 §5.1), a failed Epoch check or an
// ANNOUNCE (RFC 6887 §8.5, §14.1.3).
func (b *B4) Run(ctx context.Context) error {
	// runCtx outlives ctx by the delete Run sends as it ends.
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	// The NAT removes expired entries only when Expire is called (or a
	// lookup or a full set meets them): sweep it, as nat.Table asks.
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		t := time.NewTicker(natExpireEvery)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				b.nat.Expire()
				b.reasm.Expire()
			}
		}
	}()
	// The LAN's port-mapping server serves from whatever set the B4
	// holds, however it was provisioned.
	lanDone := b.runLANPCP(runCtx)
	if b.static() {
		defer func() { stop(); <-swept; <-lanDone }()
		return b.runStatic(ctx)
	}
	b.setStatus(func(s *Status) { s.Provisioning = "pcp" })
	conn, err := b.stack.DialUDP(netip.AddrPortFrom(netip.AddrFrom4(addrB4), 0), pcpServerAP)
	if err != nil {
		stop()
		<-swept
		<-lanDone
		return fmt.Errorf("b4: PCP socket: %w", err)
	}
	renewNow := make(chan struct{}, 1)
	client := pcp.NewClient(conn, pcp.ClientConfig{
		ClientIP: netip.AddrFrom4(addrB4),
		Nonce:    b.cfg.Nonce,
		Clock:    clock{b.now},
		Logger:   b.log,
		// The server may have lost our mapping: renew at once with the
		// old address and port as suggestions (RFC 6887 §16.3.1); the set
		// stays in use meanwhile, as the AFTR most likely rebuilds it.
		// The client calls this for every response whose Epoch fails the
		// check (§8.5) and, after its 0-5 s wait, for an ANNOUNCE that
		// does (§14.1.3).
		OnStateLoss: func() {
			b.log.Info("PCP server state loss detected, renewing")
			select {
			case renewNow <- struct{}{}:
			default:
			}
		},
	})
	done := make(chan struct{})
	go func() { client.Run(runCtx); close(done) }()
	b.client.Store(client)
	// More sets on demand (pool.go, docs/port-sets.md).
	pooled := make(chan struct{})
	go func() { defer close(pooled); b.runPool(runCtx, client) }()
	p := provisioner{b: b, client: client}
	defer func() {
		b.client.Store(nil)
		if !b.cfg.KeepBinding {
			p.release()
		}
		stop()
		conn.Close()
		<-done
		<-swept
		<-lanDone
		<-pooled
	}()

	for {
		wait, err := p.step(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && !errors.Is(err, ErrBadGrant) {
			b.log.Warn("provisioning failed", "err", err, "retry-in", wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case why := <-b.lost:
			t.Stop()
			if d := p.lost(why); d > 0 {
				bt := time.NewTimer(d)
				select {
				case <-ctx.Done():
					bt.Stop()
					return nil
				case <-bt.C:
				}
			}
		case <-renewNow:
			t.Stop()
		}
	}
}

// natExpireEvery is how often Run sweeps the NAT's expired entries.
var natExpireEvery = 5 * time.Second

// clock is the B4's Now for the PCP client, so that mapping times
// (Received, RenewAt, Expiry) and b.now() share one time line; its timers
// are real.
type clock struct{ now func() time.Time }

func (c clock) Now() time.Time                       { return c.now() }
func (clock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// provisioner is the state the provisioning loop carries between requests.
type provisioner struct {
	b      *B4
	client *pcp.Client
	// last is the address and set we held most recently: the suggestion
	// of every request, so the AFTR can give the same set back.
	last    netip.Addr
	lastSet portset.Range
	expires time.Time
	// losses counts bindings lost in quick succession, for back-off;
	// provisionedAt is the last fresh provisioning: a binding that held
	// for heldLong before it was lost starts a new count.
	losses        int
	lastLost      time.Time
	provisionedAt time.Time
	// refused counts grants refused in a row (validateGrant), for back-off.
	refused int
}

// step sends one request (retransmitted until answered or the current set
// expires) and returns how long to wait before the next one.
func (p *provisioner) step(ctx context.Context) (time.Duration, error) {
	b := p.b
	req := pcp.MapRequest{
		Protocol:     0, // all protocols: the port set is for every port-aware protocol (RFC 7596 §3)
		InternalPort: 0,
		Lifetime:     uint32(b.cfg.Lifetime / time.Second),
		PortSet:      &pcp.PortSet{Size: b.cfg.PortSetSize, FirstInternalPort: 0},
	}
	if p.last.IsValid() {
		req.SuggestedIP, req.SuggestedPort = p.last, p.lastSet.First
	} else {
		req.SuggestedIP = netip.IPv4Unspecified()
	}
	rctx := ctx
	if b.provisioned.Load() && !p.expires.IsZero() {
		// A renewal is worth retransmitting only while the set is valid.
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, p.expires.Sub(b.now()))
		defer cancel()
	}
	m, err := p.client.Map(rctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, err
		}
		if b.provisioned.Load() && !b.now().Before(p.expires) {
			b.lostBinding("lifetime expired without renewal")
		}
		wait := time.Second
		var re *pcp.ResultError
		if errors.As(err, &re) {
			// RFC 6887 §8.1: do not repeat the request within the error's
			// lifetime (bounded below so a 0 does not spin).
			// The margin puts the retry after the client's own hold on
			// the same request, which started a moment before ours.
			wait = max(time.Duration(re.Lifetime)*time.Second+100*time.Millisecond, time.Second)
		}
		if b.provisioned.Load() {
			// A refused renewal must not keep the set past its expiry:
			// come back then to drop it (the held error stops a resend).
			wait = min(wait, max(p.expires.Sub(b.now()), 0))
		}
		return wait, err
	}
	set, err := validateGrant(m, b.cfg.PortSetSize)
	if err != nil {
		return p.refuse(m, err), err
	}
	p.refused = 0
	p.install(m, set)
	return m.RenewAt(nil).Sub(b.now()), nil
}

func (p *provisioner) install(m *pcp.Mapping, set portset.Range) {
	b := p.b
	// provisioned is set before the NAT, and the NAT is given the set on
	// every answer: a lostBinding (provisioned false, then NAT cleared)
	// racing with this can then leave the NAT holding a set while the B4
	// is unprovisioned (and provisioning again), but never the B4
	// provisioned over a cleared NAT, which no later renewal of the same
	// set would repair. SetExternal keeps the table for an unchanged set
	// and flushes it for a changed one (RFC 7596 §5.1: MUST flush).
	// SetExternal also keeps, for the same address, the sessions whose
	// public port the new set still holds (issue 11 item 3).
	fresh := !b.provisioned.Swap(true)
	if err := b.nat.SetExternal(m.ExternalIP, set); err != nil {
		b.provisioned.Store(false)
		b.log.Error("NAT refused the assigned set", "err", err)
		return
	}
	p.last, p.lastSet = m.ExternalIP, set
	p.expires = m.Received.Add(m.Lifetime)
	b.lanProvisioned() // before the status change, which shows its forwards
	b.setStatus(func(s *Status) {
		s.Provisioned = true
		s.PublicIPv4, s.Ports = m.ExternalIP, set
		s.Lifetime, s.Expires, s.Epoch = m.Lifetime, p.expires, m.Epoch
		if fresh {
			s.Provisionings++
		}
	})
	if fresh {
		p.provisionedAt = b.now()
		b.log.Info("provisioned", "ipv4", m.ExternalIP, "ports", set, "lifetime", m.Lifetime, "pool", b.nat.Fill())
	} else {
		b.log.Debug("renewed", "ipv4", m.ExternalIP, "ports", set, "lifetime", m.Lifetime)
	}
}

// lost is told that the binding is gone; lostBinding already took the set
// out of use. The first re-request waits a random 0-250 ms, so that B4s
// told at once (an AFTR restart answering everyone's traffic with 1/5) do
// not all ask in the same instant; quick repeats back off exponentially
// (1 s, 2 s, ... 64 s) with ±50 % jitter, so that a B4 the AFTR keeps
// refusing does not hammer it.
func (p *provisioner) lost(why string) time.Duration {
	now := p.b.now()
	// Quick succession: the last loss was recent and the binding got
	// since then did not hold. An AFTR that restarts (and gives the set
	// back) every few seconds must not push its B4s into ever longer
	// waits; one that refuses or flaps at once must not be hammered.
	if now.Sub(p.lastLost) < 30*time.Second && now.Sub(p.provisionedAt) < heldLong {
		p.losses++
	} else {
		p.losses = 0
	}
	p.lastLost = now
	if p.losses == 0 {
		return time.Duration(rand.Int64N(int64(firstLossJitter)))
	}
	d := jitter(time.Duration(1<<min(p.losses-1, 6)) * time.Second)
	p.b.log.Info("backing off before provisioning again", "why", why, "wait", d)
	return d
}

// heldLong is how long a binding must hold for its loss to count as a new
// episode rather than a repeat (see lost).
var heldLong = 5 * time.Second

// firstLossJitter bounds the random wait before the first re-request.
var firstLossJitter = 250 * time.Millisecond

// jitter spreads d uniformly over [d/2, 3d/2).
func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d)))
}

// refuse handles a SUCCESS whose grant validateGrant refused: nothing is
// installed (a held set stays in use until it expires, as after a refused
// renewal), the refusal is logged and counted, and the next request waits
// 2 s, 4 s, ... up to 5 min, jittered: a server that keeps answering
// nonsense must not be asked in a loop.
func (p *provisioner) refuse(m *pcp.Mapping, err error) time.Duration {
	b := p.b
	b.count.Count(cGrantRefused, 0)
	p.refused++
	wait := jitter(min(time.Duration(1)<<min(p.refused, 9)*time.Second, maxRefusedWait))
	b.log.Warn("PCP grant refused, asking again later", "err", err, "ipv4", m.ExternalIP,
		"port", m.ExternalPort, "lifetime", m.Lifetime, "retry-in", wait)
	if b.provisioned.Load() {
		wait = min(wait, max(p.expires.Sub(b.now()), 0))
	}
	return wait
}

// maxRefusedWait caps the back-off after refused grants.
var maxRefusedWait = 5 * time.Minute

// release deletes the binding as Run ends (MAP lifetime 0 with PORT_SET,
// RFC 6887 §15.1, RFC 7753 §4.4), so that the AFTR frees the set now and
// a B4 that comes back with another nonce is not refused for the rest of
// the binding's lifetime (RFC 6887 §11.3). One transmission, bounded by
// deleteWait; a B4 that never held a binding sends nothing.
func (p *provisioner) release() {
	b := p.b
	if !p.last.IsValid() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), deleteWait)
	defer cancel()
	_, err := p.client.Map(ctx, pcp.MapRequest{
		Protocol: 0, InternalPort: 0, Lifetime: 0,
		PortSet: &pcp.PortSet{Size: b.cfg.PortSetSize},
	})
	b.provisioned.Store(false)
	b.setStatus(func(s *Status) { s.Provisioned = false })
	if err != nil {
		b.log.Warn("binding not deleted at the AFTR; it lapses at the end of its lifetime", "err", err, "ipv4", p.last, "ports", p.lastSet)
		return
	}
	b.nat.Clear()
	b.log.Info("binding deleted at the AFTR", "ipv4", p.last, "ports", p.lastSet)
}
