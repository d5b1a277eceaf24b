package devlink

import "sync"

// Async decouples a producer that may hold locks (a gVisor stack's output
// path) from a consumer that may call back into it: Send queues the packet
// (which it takes ownership of) and one goroutine hands it to fn. A full
// queue drops, as a congested link does.
type Async struct {
	q    chan []byte
	fn   func([]byte)
	done chan struct{}
	once sync.Once
}

// NewAsync starts the goroutine; Close stops it.
func NewAsync(depth int, fn func([]byte)) *Async {
	a := &Async{q: make(chan []byte, depth), fn: fn, done: make(chan struct{})}
	go a.run()
	return a
}

func (a *Async) run() {
	for {
		select {
		case p := <-a.q:
			a.fn(p)
		case <-a.done:
			return
		}
	}
}

// Send queues pkt, which the caller must not touch afterwards.
func (a *Async) Send(pkt []byte) {
	select {
	case a.q <- pkt:
	default:
	}
}

// Close stops delivery.
func (a *Async) Close() { a.once.Do(func() { close(a.done) }) }
