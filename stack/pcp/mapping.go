package pcp

import (
	"net/netip"
	"time"
)

// MaxLifetime caps a granted lifetime: RFC 6887 §15 asks clients to treat
// absurdly long ones as a sane value such as 24 hours.
const MaxLifetime = 24 * time.Hour

// MinRenewalGap is the least time between two renewal requests for one
// mapping (RFC 6887 §11.2.1).
const MinRenewalGap = 4 * time.Second

// Mapping is a granted MAP (RFC 6887 §11.4; RFC 7753 §4.2).
type Mapping struct {
	ExternalIP   netip.Addr
	ExternalPort uint16   // the first port of a set
	PortSet      *PortSet // the set mapped; nil for a single port
	Lifetime     time.Duration
	Epoch        uint32    // server Epoch Time in the response
	Received     time.Time // client time the response arrived
	Response     *Message  // the whole response
}

// Expiry is when the mapping lapses unless renewed.
func (m *Mapping) Expiry() time.Time { return m.Received.Add(m.Lifetime) }

// RenewAt is when to send the first renewal: uniformly in [1/2, 5/8] of
// the lifetime (RFC 6887 §11.2.1). r nil uses math/rand/v2. A zero
// lifetime gives the zero Time.
func (m *Mapping) RenewAt(r Rand) time.Time {
	t, _ := m.Renewal(0, time.Time{}, r)
	return t
}

// Renewal is when to send renewal attempt n when the previous attempts
// got no SUCCESS: n = 0 is in [1/2, 5/8] of the lifetime, n = 1 in
// [3/4, 3/4+1/16], n = 2 in [7/8, 7/8+1/32], and so on (window start
// 1-2^-(n+1), width 2^-(n+3)); never earlier than prev+4 s when prev (the
// previous attempt) is set (§11.2.1). ok is false when no attempt fits
// before the mapping expires.
func (m *Mapping) Renewal(n int, prev time.Time, r Rand) (at time.Time, ok bool) {
	if r == nil {
		r = globalRand{}
	}
	lt := m.Lifetime
	start, width := lt, time.Duration(0)
	if n >= 0 && n < 60 {
		start = lt - lt>>(n+1)
		width = lt >> (n + 3)
	}
	at = m.Received.Add(start + time.Duration(r.Float64()*float64(width)))
	if !prev.IsZero() && at.Before(prev.Add(MinRenewalGap)) {
		at = prev.Add(MinRenewalGap)
	}
	if !at.Before(m.Expiry()) {
		return time.Time{}, false
	}
	return at, true
}

func capLifetime(s uint32) time.Duration {
	return min(time.Duration(s)*time.Second, MaxLifetime)
}
