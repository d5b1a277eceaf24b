package aftr

import (
	"sync"
	"time"
)

// PCP request rate limits (issue 11 item 6). RFC 6887 §18.1 asks a server
// to protect itself from request floods and leaves the mechanism to it:
// here a token bucket per B4 and one for all B4s together, checked before
// a request is parsed, so that a flood costs a map lookup per packet and
// not a parse, an allocation attempt and an answer. A request over either
// limit is dropped without an answer and counted; its B4 retransmits
// (RFC 6887 §8.1.1), and its retransmissions, 3 s apart and more, fit its
// bucket again.
//
// The per-B4 bucket is keyed by the /64 of the outer IPv6 source, as the
// ICMPv6 limiter is (icmp.go): a B4's WAN address lies in its subscriber's
// own /64 (RFC 4291 §2.5.4), and a host on that link choosing a fresh
// source for each request among the 2^64 of its prefix then gains nothing,
// while keying by /128 would give it a new bucket per address and fill the
// table. The price: B4s sharing one /64 share one bucket.
//
// Provisioning systems (PCP over plain IPv6, provision.go) are exempt from
// both limits: they are authorised by source prefix on a network RFC 6887
// §13.1 requires to be trusted, one of them speaks for many B4s (a per-B4
// limit would cripple a bulk provisioning run), and what they send is
// answered once the journal has it, not on the softwire path.

// pcpRateTableMax bounds the per-B4 table: 2^16 /64s that each sent a
// request within the last refill time (PCPBurstPerB4 / PCPRatePerB4,
// 5 s by default). Past it a newcomer is held to the global limit only,
// counted (pcp-rate-limit-table-full): dropping it instead would let a
// flood from many prefixes shut out every B4 that has no bucket yet.
const pcpRateTableMax = 1 << 16

// tokenBucket is one bucket: tokens in store at last (Unix ns).
type tokenBucket struct {
	tokens float64
	last   int64
}

// take refills b for the time since its last use at rate per second up to
// burst, and takes a token if there is one. A clock that steps back
// refills nothing.
func (b *tokenBucket) take(now int64, rate, burst float64) bool {
	if d := now - b.last; d > 0 {
		b.tokens = min(burst, b.tokens+float64(d)/float64(time.Second)*rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// pcpVerdict is what pcpLimiter.allow says about one request.
type pcpVerdict uint8

const (
	pcpAllow      pcpVerdict = iota
	pcpOverB4                // its /64's bucket is empty
	pcpOverGlobal            // the global bucket is empty
)

// pcpLimiter holds the buckets. One mutex: the work under it is a map
// access and a few float operations.
type pcpLimiter struct {
	mu         sync.Mutex
	globalRate float64 // 0: no global limit
	global     tokenBucket
	b4Rate     float64 // 0: no per-B4 limit
	b4Burst    float64
	b4s        map[[8]byte]tokenBucket
	max        int
	refill     int64 // ns for an idle bucket to fill up: it can be forgotten
	nextSweep  int64 // Unix ns before which a full table is not swept again
}

// newPCPLimiter returns nil when both limits are off.
func newPCPLimiter(c *Config) *pcpLimiter {
	if c.PCPRate <= 0 && c.PCPRatePerB4 <= 0 {
		return nil
	}
	l := &pcpLimiter{max: pcpRateTableMax}
	if c.PCPRate > 0 {
		// A second's worth in store: what a burst of re-requests after
		// an ANNOUNCE (announce.go) or a restart may need at once.
		l.globalRate = float64(c.PCPRate)
		l.global.tokens = l.globalRate
	}
	if c.PCPRatePerB4 > 0 {
		l.b4Rate = c.PCPRatePerB4
		l.b4Burst = float64(c.PCPBurstPerB4)
		if l.b4Burst < 1 {
			l.b4Burst = max(1, 5*l.b4Rate)
		}
		l.b4s = make(map[[8]byte]tokenBucket)
		// Capped at a day: only an absurdly slow rate needs longer.
		l.refill = int64(min(l.b4Burst/l.b4Rate, 86400) * float64(time.Second))
	}
	return l
}

// allow takes a token for a request from src at now from its /64's
// bucket, then from the global one. tableFull reports a source held to
// the global limit only because the per-B4 table was full. A request
// refused by its own bucket spends no global token: a flooding B4 leaves
// the global bucket to the others.
func (l *pcpLimiter) allow(src *[16]byte, now int64) (v pcpVerdict, tableFull bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := [8]byte(src[:8])
	var b tokenBucket
	perB4 := l.b4s != nil
	if perB4 {
		var ok bool
		b, ok = l.b4s[key]
		if !ok && len(l.b4s) >= l.max {
			l.sweep(now)
		}
		switch {
		case ok:
		case len(l.b4s) >= l.max:
			tableFull = true
		default:
			b = tokenBucket{tokens: l.b4Burst, last: now}
		}
		perB4 = !tableFull
		if perB4 {
			allowed := b.take(now, l.b4Rate, l.b4Burst)
			l.b4s[key] = b
			if !allowed {
				return pcpOverB4, false
			}
		}
	}
	if l.globalRate > 0 && !l.global.take(now, l.globalRate, l.globalRate) {
		if perB4 {
			// Not answered: the B4 keeps its token for its retransmission.
			b.tokens++
			l.b4s[key] = b
		}
		return pcpOverGlobal, tableFull
	}
	return pcpAllow, tableFull
}

// sweep forgets the buckets idle for the refill time (they are full: a new
// bucket is the same), at most once per refill time, so that sources
// arriving at a table full of active buckets cost a lookup each, not a
// walk of the table.
func (l *pcpLimiter) sweep(now int64) {
	if now < l.nextSweep {
		return
	}
	l.nextSweep = now + max(l.refill, int64(time.Second))
	for k, b := range l.b4s {
		if now-b.last >= l.refill {
			delete(l.b4s, k)
		}
	}
}

// pcpAllowed applies the limits to a PCP request from the B4 at src
// (octets the request's size, for the counters), counting what it drops.
func (a *AFTR) pcpAllowed(src *[16]byte, octets int) bool {
	if a.pcpLimit == nil {
		return true
	}
	v, full := a.pcpLimit.allow(src, a.now().UnixNano())
	if full {
		a.count.Count(cPCPRateTableFull, octets)
	}
	switch v {
	case pcpOverB4:
		a.count.Count(cDropPCPOverRateLimitB4, octets)
		return false
	case pcpOverGlobal:
		a.count.Count(cDropPCPOverRateLimitGlobal, octets)
		return false
	}
	return true
}
