package b4

import (
	"errors"
	"sync"
	"time"

	"github.com/lw4o6/lw4o6/b4/nat"
	"github.com/lw4o6/lw4o6/stack/packet"
)

// RFC 6888 REQ-11: a NAT that cannot create a mapping for lack of
// resources or for a quota MUST drop the packet and SHOULD send ICMP
// destination unreachable code 1 (host unreachable) to the sender, a soft
// error (RFC 1122) rather than RFC 5508 REQ-8's code 13, so that TCP does
// not give up on a connection that may succeed once ports free; the ICMP
// may be rate-limited. The B4 answers so for a full port set, the session
// table bound and a LAN host's own quota (nat.ErrPortsExhausted,
// ErrTooManySessions, ErrHostQuota), at most natICMPRate a second with a
// burst of as many: a host flooding new flows draws a bounded trickle of
// errors, never one per packet.

// natICMPRate bounds the host-unreachable errors for NAT refusals.
const natICMPRate = 100

// icmpCodeHostUnreachable is ICMPv4 destination unreachable code 1.
const icmpCodeHostUnreachable = 1

// refusalBucket is a token bucket; its zero value is full.
type refusalBucket struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
	primed bool
}

func (r *refusalBucket) take(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.primed {
		r.primed, r.tokens, r.last = true, natICMPRate, now
	}
	if d := now.Sub(r.last); d > 0 {
		r.tokens = min(natICMPRate, r.tokens+d.Seconds()*natICMPRate)
		r.last = now
	}
	if r.tokens < 1 {
		return false
	}
	r.tokens--
	return true
}

// natRefused answers a packet the NAT refused for resources (RFC 6888
// REQ-11b); other refusals are silent.
func (b *B4) natRefused(err error, ip4 packet.IPv4) {
	if !errors.Is(err, nat.ErrPortsExhausted) && !errors.Is(err, nat.ErrTooManySessions) && !errors.Is(err, nat.ErrHostQuota) {
		return
	}
	if !b.natICMP.take(b.now()) {
		b.count.Count(cNATICMPLimited, len(ip4))
		return
	}
	b.sendICMPv4ToLAN(packet.ICMPv4DstUnreachable, icmpCodeHostUnreachable, ip4)
}
