package lanpcp

import (
	"net/netip"
	"time"

	"github.com/lw4o6/lw4o6/b4/nat"
)

// key names a mapping as the NAT does: protocol and internal endpoint.
type key struct {
	proto    uint8
	internal netip.AddrPort
}

// record is what the server remembers of a mapping it made: who owns it
// (RFC 6887 §11.3, §12.3: one Mapping Nonce per mapping), until when, and
// the options to echo and enforce. The NAT holds the mapping itself.
type record struct {
	key
	ext    uint16
	static bool
	owner  string // for status: "static", "pcp <client>", "nat-pmp <client>"
	desc   string

	// A MAP-made (or NAT-PMP-made, nonce unset) explicit mapping.
	mapOwned bool
	natpmp   bool // made by NAT-PMP: no nonce; a PCP MAP of the same host adopts it
	mapNonce [12]byte
	mapUntil time.Time
	filters  []nat.Filter

	// A PEER-managed outbound mapping.
	peerOwned bool
	peerNonce [12]byte
	peerUntil time.Time
}

// live reports whether the record still owns anything at now.
func (r *record) live(now time.Time) bool {
	return r.static || (r.mapOwned && now.Before(r.mapUntil)) || (r.peerOwned && now.Before(r.peerUntil))
}

// get returns the live record of k, dropping the parts that expired.
func (s *Server) get(k key, now time.Time) *record {
	r := s.recs[k]
	if r == nil {
		return nil
	}
	if r.mapOwned && !now.Before(r.mapUntil) {
		r.mapOwned, r.natpmp, r.filters = false, false, nil
	}
	if r.peerOwned && !now.Before(r.peerUntil) {
		r.peerOwned = false
	}
	if !r.live(now) {
		delete(s.recs, k)
		return nil
	}
	return r
}

// quotaLeft reports whether host may hold one more mapping, and whether the
// server may: USER_EX_QUOTA and NO_RESOURCES otherwise. Expired records
// met on the way are dropped; the walk is bounded by MaxMappings.
func (s *Server) quotaLeft(host netip.Addr, now time.Time) (perHost, total bool) {
	n := 0
	for k := range s.recs {
		r := s.get(k, now)
		if r != nil && !r.static && k.internal.Addr() == host {
			n++
		}
	}
	return n < s.cfg.MaxPerHost, len(s.recs) < s.cfg.MaxMappings
}

func (s *Server) put(k key) *record {
	r := s.recs[k]
	if r == nil {
		r = &record{key: k}
		s.recs[k] = r
	}
	return r
}

// limiter is a token bucket per host, bounded in hosts.
type limiter struct {
	rate, burst float64
	max         int
	hosts       map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// allow takes a token from a's bucket. When the table is full, buckets that
// have refilled (idle hosts) are forgotten; if none has, a new host is
// refused.
func (l *limiter) allow(a netip.Addr, now time.Time) bool {
	b := l.hosts[a]
	if b == nil {
		if len(l.hosts) >= l.max {
			for h, x := range l.hosts {
				if x.refill(now, l.rate, l.burst) >= l.burst {
					delete(l.hosts, h)
				}
			}
			if len(l.hosts) >= l.max {
				return false
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		l.hosts[a] = b
	}
	if b.refill(now, l.rate, l.burst) < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *bucket) refill(now time.Time, rate, burst float64) float64 {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(burst, b.tokens+d.Seconds()*rate)
		b.last = now
	}
	return b.tokens
}
