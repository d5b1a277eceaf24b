package socks5

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const relayBufSize = 32 << 10

var relayBufs = sync.Pool{New: func() any { b := make([]byte, relayBufSize); return &b }}

// activity records when data last moved, for idle timeouts.
type activity struct {
	start time.Time // monotonic origin
	last  atomic.Int64
}

func newActivity() *activity { return &activity{start: time.Now()} }

func (a *activity) touch() { a.last.Store(int64(time.Since(a.start))) }

func (a *activity) idleFor() time.Duration {
	return time.Since(a.start) - time.Duration(a.last.Load())
}

// watchdog calls expire once the activity has been idle for idle.
type watchdog struct {
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
	act     *activity
	idle    time.Duration
	expire  func()
	fired   atomic.Bool
}

func (a *activity) watch(idle time.Duration, expire func()) *watchdog {
	w := &watchdog{act: a, idle: idle, expire: expire}
	if idle <= 0 {
		w.stopped = true
		return w
	}
	w.mu.Lock()
	w.t = time.AfterFunc(idle, w.check)
	w.mu.Unlock()
	return w
}

func (w *watchdog) check() {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	if d := w.act.idleFor(); d < w.idle {
		w.t.Reset(w.idle - d)
		w.mu.Unlock()
		return
	}
	w.stopped = true
	w.mu.Unlock()
	w.fired.Store(true)
	w.expire()
}

func (w *watchdog) stop() {
	w.mu.Lock()
	w.stopped = true
	if w.t != nil {
		w.t.Stop()
	}
	w.mu.Unlock()
}

type closeWriter interface{ CloseWrite() error }

type relayStats struct {
	up, down int64 // bytes client→destination, destination→client
	err      error
}

// relay copies both ways between client and up until both directions have
// ended, propagating half-closes. An error in either direction, or the idle
// timeout, closes both connections.
func (s *Server) relay(client, up net.Conn) relayStats {
	act := newActivity()
	act.touch()
	var once sync.Once
	var first error
	abort := func(err error) {
		once.Do(func() {
			first = err
			client.Close()
			up.Close()
		})
	}
	wd := act.watch(s.idleTimeout(), func() { abort(errIdle) })
	defer wd.stop()

	var st relayStats
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var err error
		st.down, err = pipe(client, up, act)
		if err != nil {
			abort(cleanEnd(err))
		}
	}()
	var err error
	st.up, err = pipe(up, client, act)
	if err != nil {
		abort(cleanEnd(err))
	}
	wg.Wait()
	abort(nil) // both directions ended: close both
	st.err = first
	return st
}

// cleanEnd maps the end of a direction whose peer cannot half-close (so
// the whole session is closed instead) to a normal end.
func cleanEnd(err error) error {
	if errors.Is(err, errNoHalfClose) {
		return nil
	}
	return err
}

// pipe copies src to dst until src ends, then half-closes dst. It returns
// nil only after a clean EOF and half-close.
func pipe(dst, src net.Conn, act *activity) (int64, error) {
	bp := relayBufs.Get().(*[]byte)
	defer relayBufs.Put(bp)
	buf := *bp
	var total int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			act.touch()
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if werr == nil && w != n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return total, werr
			}
			act.touch()
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				return total, rerr
			}
			cw, ok := dst.(closeWriter)
			if !ok {
				return total, errNoHalfClose
			}
			return total, cw.CloseWrite()
		}
	}
}
