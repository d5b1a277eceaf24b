package egress

import (
	"sync"
	"sync/atomic"
	"time"
)

// idleTimer calls a function once it has not been touched for its duration.
// Touching costs one clock read and one atomic store, so the per-packet path
// never resets a runtime timer.
type idleTimer struct {
	d    time.Duration
	last atomic.Int64 // UnixNano of the last touch

	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func newIdleTimer(d time.Duration, expire func()) *idleTimer {
	it := &idleTimer{d: d}
	it.touch()
	it.mu.Lock()
	defer it.mu.Unlock()
	it.t = time.AfterFunc(d, func() {
		if rest := it.d - time.Since(time.Unix(0, it.last.Load())); rest > 0 {
			it.mu.Lock()
			if !it.stopped {
				it.t.Reset(rest)
			}
			it.mu.Unlock()
			return
		}
		expire()
	})
	return it
}

func (it *idleTimer) touch() { it.last.Store(time.Now().UnixNano()) }

func (it *idleTimer) stop() {
	it.mu.Lock()
	it.stopped = true
	it.t.Stop()
	it.mu.Unlock()
}
