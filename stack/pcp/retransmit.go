package pcp

import (
	"math/rand/v2"
	"time"
)

// Retransmission constants of RFC 6887 §8.1.1. MRC and MRD are 0: a
// request is retransmitted until it is answered or its context ends.
const (
	IRT = 3 * time.Second    // initial retransmission time
	MRT = 1024 * time.Second // maximum retransmission time
)

// Clock is the client's source of time; tests substitute a fake one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// Rand is a source of uniform numbers in [0, 1) for the jitter of
// retransmissions, renewals and the ANNOUNCE wait; *math/rand/v2.Rand
// implements it. It need not be cryptographic (§8.1.1).
type Rand interface {
	Float64() float64
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// globalRand uses math/rand/v2's goroutine-safe, randomly seeded source,
// so each client instance draws a different sequence (§8.1.1 SHOULD).
type globalRand struct{}

func (globalRand) Float64() float64 { return rand.Float64() }

// nextRT is the next retransmission timeout of RFC 6887 §8.1.1:
// RT = (1+RAND)·IRT for the first transmission (prev = 0), then
// RT = (1+RAND)·min(2·RTprev, MRT), with RAND = 0.2u-0.1 uniform in
// [-0.1, +0.1] drawn afresh each time from u in [0, 1).
func nextRT(prev time.Duration, u float64) time.Duration {
	base := IRT
	if prev > 0 {
		base = min(2*prev, MRT)
	}
	return time.Duration(float64(base) * (0.9 + 0.2*u))
}
