package pcp

import (
	"sync"
	"time"
)

// epochClock is a server's Epoch Time: seconds since start or since the
// last reset (RFC 6887 §8.5).
type epochClock struct {
	now   func() time.Time
	mu    sync.Mutex
	start time.Time
}

func newEpochClock(now func() time.Time) *epochClock {
	return &epochClock{now: now, start: now()}
}

// epoch is the whole seconds since start. A clock that steps back before
// start reads 0 rather than wrapping.
func (e *epochClock) epoch() uint32 {
	now := e.now()
	e.mu.Lock()
	d := now.Sub(e.start)
	e.mu.Unlock()
	if d < 0 {
		return 0
	}
	return uint32(int64(d / time.Second))
}

func (e *epochClock) startTime() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.start
}

// reset restarts the count at 0: the server MUST do so when it loses its
// mappings or its external address changes (RFC 6887 §8.5).
func (e *epochClock) reset() {
	now := e.now()
	e.mu.Lock()
	e.start = now
	e.mu.Unlock()
}

// epochCheck is the client side of RFC 6887 §8.5 for one server. It is not
// safe for concurrent use.
type epochCheck struct {
	seen       bool
	prevServer uint32
	prevClient int64 // client seconds
}

// check validates a received Epoch Time at client time now (whole seconds
// from any fixed origin; it must not go backwards) and records both.
func (e *epochCheck) check(server uint32, now int64) bool {
	ok := !e.seen || epochValid(e.prevServer, server, e.prevClient, now)
	e.seen = true
	e.prevServer, e.prevClient = server, now
	return ok
}

// epochValid is the integer test of RFC 6887 §8.5. The RFC says the
// deltas "can be computed as unsigned", but a server time that went back
// by one second, which it says must be tolerated, gives server_delta = -1:
// as an unsigned number that would fail the first comparison. Signed 64-bit
// arithmetic keeps the stated intent: a step back of one second passes when
// the client time barely moved, as reordering implies.
func epochValid(prevServer, currServer uint32, prevClient, currClient int64) bool {
	ps, cs := int64(prevServer), int64(currServer)
	if cs < ps-1 {
		return false // time should not go backwards
	}
	clientDelta := currClient - prevClient
	serverDelta := cs - ps
	if clientDelta+2 < serverDelta-serverDelta/16 {
		return false
	}
	if serverDelta+2 < clientDelta-clientDelta/16 {
		return false
	}
	return true
}
