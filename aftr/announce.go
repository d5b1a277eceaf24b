package aftr

import (
	"container/heap"
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lw4o6/lw4o6/stack/packet"
)

// ANNOUNCE after state loss (RFC 6887 §14.1.3; PROTOCOL.md §8 item 5).
// When the AFTR starts without restored bindings, or AnnounceStateLoss is
// called, it resets its Epoch (§8.5) and tells the B4s with unsolicited
// ANNOUNCE responses, each sent up to 10 times, the first gap 250 ms and
// each later one doubled, inside the softwire as PCP from 192.0.0.1:5351 to
// 224.0.0.1:5350:
//   - to Config.AnnounceGroup, an IPv6 multicast group on the access
//     network, from Config.Addr, at once: it reaches idle B4s too;
//   - unicast to every B4 the AFTR hears from without a binding, into its
//     softwire from the address it used, once per B4 (besides the ICMPv6
//     1/5 its packet draws), as long as a binding from before the loss
//     could still be alive (Config.LifetimeMax). A B4 that has a binding
//     again gets no further copies.
//
// Memory is bounded: at most announceMaxB4s B4s are remembered per loss
// (beyond, counted drops) and first unicast copies are rate-limited, so
// that packets from invented B4 addresses cannot make the AFTR send
// without bound.
const (
	announceCopies   = 10 // RFC 6887 §14.1.3: up to 10 times
	announceFirstGap = 250 * time.Millisecond
	announceMaxB4s   = 1 << 16
	announceRate     = 1000 // first unicast copies per second
)

var announceGroup4 = [4]byte{224, 0, 0, 1} // RFC 6887 §14.1.3: IPv4 all hosts, port 5350

type announcer struct {
	until atomic.Int64 // Unix ns: end of the learning window; 0 closed

	mu   sync.Mutex
	sent map[netip.Addr]struct{} // B4s announced to since the loss
	jobs announceJobs            // copies still to send
	wake chan struct{}
	rate *rateLimiter
	max  int // most B4s remembered per loss: announceMaxB4s
}

// announceJob is the rest of one ANNOUNCE series.
type announceJob struct {
	b4, br netip.Addr // b4 zero: the multicast group
	next   time.Time
	gap    time.Duration
	left   int
}

type announceJobs []announceJob

func (h announceJobs) Len() int           { return len(h) }
func (h announceJobs) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h announceJobs) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *announceJobs) Push(x any)        { *h = append(*h, x.(announceJob)) }
func (h *announceJobs) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func newAnnouncer(now func() time.Time) *announcer {
	return &announcer{sent: map[netip.Addr]struct{}{}, wake: make(chan struct{}, 1), rate: newRateLimiter(announceRate, now), max: announceMaxB4s}
}

// AnnounceStateLoss declares that PCP-created bindings may have been lost:
// the Epoch goes back to 0 (RFC 6887 §8.5) and, with Config.Announce, the
// ANNOUNCEs described above start. Run calls it at start when no state was
// restored; an operator or a test may call it at any time.
func (a *AFTR) AnnounceStateLoss() {
	a.pcp.ResetEpoch()
	// A restart after this continues the new Epoch, not the old one.
	if err := a.journalEpoch(); err != nil {
		a.log.Error("journal: new Epoch not recorded", "err", err)
	}
	if !a.cfg.Announce {
		return
	}
	now := a.now()
	n := a.ann
	n.mu.Lock()
	n.until.Store(now.Add(a.cfg.LifetimeMax).UnixNano())
	clear(n.sent)
	n.jobs = n.jobs[:0]
	multicast := a.cfg.AnnounceGroup.IsValid()
	if multicast {
		heap.Push(&n.jobs, announceJob{next: now.Add(announceFirstGap), gap: announceFirstGap, left: announceCopies - 1})
	}
	n.mu.Unlock()
	a.log.Info("PCP state loss: Epoch reset, announcing", "group", a.cfg.AnnounceGroup)
	if multicast {
		a.sendAnnounce(announceJob{})
	}
	n.poke()
}

// learnB4 is told of a softwire packet from a B4 address that has no
// binding; during a learning window it starts that B4's ANNOUNCE series.
func (a *AFTR) learnB4(outer *packet.IPv6) {
	n := a.ann
	until := n.until.Load()
	if until == 0 {
		return
	}
	now := a.now()
	if now.UnixNano() >= until {
		n.until.CompareAndSwap(until, 0)
		return
	}
	b4 := outer.SrcAddr()
	n.mu.Lock()
	_, done := n.sent[b4]
	full := len(n.sent) >= n.max
	n.mu.Unlock()
	if done {
		return
	}
	if full {
		a.count.Count(cDropAnnounceTableFull, len(outer.Packet))
		return
	}
	if len(a.table.ByB4(b4)) > 0 {
		return // bound, only not for this packet: no state was lost for it
	}
	if !n.rate.allow() {
		a.count.Count(cDropAnnounceOverRate, len(outer.Packet))
		return // not remembered: a later packet tries again
	}
	job := announceJob{b4: b4, br: outer.DstAddr(), next: now.Add(announceFirstGap), gap: announceFirstGap, left: announceCopies - 1}
	n.mu.Lock()
	if _, done := n.sent[b4]; done {
		n.mu.Unlock()
		return
	}
	n.sent[b4] = struct{}{}
	heap.Push(&n.jobs, job)
	n.mu.Unlock()
	a.sendAnnounce(job)
	n.poke()
}

func (n *announcer) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// sendDueAnnounces sends the copies due by now and returns when the next
// one is due (zero: none pending).
func (a *AFTR) sendDueAnnounces() time.Time {
	n := a.ann
	now := a.now()
	var due []announceJob
	n.mu.Lock()
	for len(n.jobs) > 0 && !n.jobs[0].next.After(now) {
		j := heap.Pop(&n.jobs).(announceJob)
		if j.b4.IsValid() && len(a.table.ByB4(j.b4)) > 0 {
			continue // it asked again: the series has done its job
		}
		due = append(due, j)
		if j.left > 1 {
			// RFC 6887 §14.1.3: each gap at least double the last, also
			// when this copy goes out late.
			j.gap *= 2
			j.next = now.Add(j.gap)
			j.left--
			heap.Push(&n.jobs, j)
		}
	}
	var next time.Time
	if len(n.jobs) > 0 {
		next = n.jobs[0].next
	}
	n.mu.Unlock()
	for _, j := range due {
		a.sendAnnounce(j)
	}
	return next
}

// sendAnnounce sends one ANNOUNCE copy of j's series, with the Epoch as it
// is now.
func (a *AFTR) sendAnnounce(j announceJob) {
	msg := a.pcp.Announce()
	// 224.0.0.1 is link-local (RFC 5771): TTL 1.
	b := packet.AppendUDP4(nil, packet.IPv6HeaderLen, addrAFTR4, announceGroup4, pcpServerPort, pcpClientPort, 1, msg)
	if !j.b4.IsValid() {
		g := a.cfg.AnnounceGroup
		hop := a.cfg.HopLimit
		if g.IsLinkLocalMulticast() || g.IsInterfaceLocalMulticast() {
			hop = 1 // RFC 4291 §2.7: the group does not leave the link
		}
		out := packet.Encapsulate(b, packet.IPv6HeaderLen, a.addr6, g.As16(), hop)
		a.count.Count(cOutAnnounceMulticast, len(out))
		a.sendAccess(out)
		return
	}
	out := packet.Encapsulate(b, packet.IPv6HeaderLen, j.br.As16(), j.b4.As16(), a.cfg.HopLimit)
	a.count.Count(cOutAnnounceUnicast, len(out))
	a.sendAccess(out)
}

// runAnnouncer sends the ANNOUNCE copies as they fall due until ctx is
// done. It reads the AFTR's clock, and wakes at least once a second so that
// a test clock moved forward is noticed.
func (a *AFTR) runAnnouncer(ctx context.Context) {
	for {
		wait := time.Second
		if next := a.sendDueAnnounces(); !next.IsZero() {
			wait = min(max(next.Sub(a.now()), time.Millisecond), time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-a.ann.wake:
			t.Stop()
		case <-t.C:
		}
	}
}
