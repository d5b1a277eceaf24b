// Package memtun is an in-memory tun.Device pair for tests: what one end
// writes, the other end reads, through Go channels, as wireguard-go's
// tun/tuntest does for its devices.
package memtun

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/lw4o6/lw4o6/tun"
)

const (
	// BatchSize is the most packets one Read returns.
	BatchSize = 64
	// Depth is how many packets wait in each direction before Write blocks.
	Depth = 1024
)

var pipes atomic.Uint64

// NewPipe returns two connected Devices carrying packets of up to mtu
// octets. Write copies each packet, so the caller may reuse its buffers at
// once; it blocks while Depth packets wait unread, which keeps tests
// lossless. Packets written after the other end closed are discarded, as a
// wire with nobody listening would. Each end is closed on its own.
func NewPipe(mtu int) (a, b tun.Device) {
	id := pipes.Add(1)
	ab := make(chan *[]byte, Depth)
	ba := make(chan *[]byte, Depth)
	pool := &sync.Pool{New: func() any { p := make([]byte, 0, mtu); return &p }}
	ea := &end{name: fmt.Sprintf("mem%d.a", id), mtu: mtu, in: ba, out: ab, pool: pool, closed: make(chan struct{})}
	eb := &end{name: fmt.Sprintf("mem%d.b", id), mtu: mtu, in: ab, out: ba, pool: pool, closed: make(chan struct{})}
	ea.peer, eb.peer = eb, ea
	return ea, eb
}

type end struct {
	name      string
	mtu       int
	in        <-chan *[]byte
	out       chan<- *[]byte
	pool      *sync.Pool
	peer      *end
	closed    chan struct{}
	closeOnce sync.Once
	rmu       sync.Mutex
}

func (e *end) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	e.rmu.Lock()
	defer e.rmu.Unlock()
	limit := min(len(bufs), len(sizes))
	if limit == 0 {
		return 0, io.ErrShortBuffer
	}
	for {
		select {
		case <-e.closed:
			return 0, tun.ErrClosed
		default:
		}
		var p *[]byte
		select {
		case p = <-e.in:
		case <-e.closed:
			return 0, tun.ErrClosed
		}
		n := 0
		for {
			if offset+len(*p) <= len(bufs[n]) { // else dropped: it does not fit
				sizes[n] = copy(bufs[n][offset:], *p)
				n++
			}
			e.pool.Put(p)
			if n == limit {
				break
			}
			select {
			case p = <-e.in:
				continue
			default:
			}
			break
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (e *end) Write(bufs [][]byte, offset int) (int, error) {
	var first error
	sent := 0
	for _, b := range bufs {
		pkt := b[offset:]
		if len(pkt) > e.mtu {
			if first == nil {
				first = fmt.Errorf("%s: %d octets: %w", e.name, len(pkt), tun.ErrTooBig)
			}
			continue
		}
		p := e.pool.Get().(*[]byte)
		*p = append((*p)[:0], pkt...)
		select {
		case <-e.closed:
			e.pool.Put(p)
			return sent, tun.ErrClosed
		default:
		}
		select {
		case e.out <- p:
		case <-e.peer.closed:
			e.pool.Put(p)
		case <-e.closed:
			e.pool.Put(p)
			return sent, tun.ErrClosed
		}
		sent++
	}
	return sent, first
}

func (e *end) BatchSize() int { return BatchSize }
func (e *end) MTU() int       { return e.mtu }
func (e *end) Name() string   { return e.name }

func (e *end) Close() error {
	e.closeOnce.Do(func() { close(e.closed) })
	return nil
}
