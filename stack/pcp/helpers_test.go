package pcp

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// Documentation addresses only (RFC 5737, RFC 3849, RFC 7335).
var (
	b4Addr    = netip.MustParseAddr("192.0.0.2")
	aftrAddr  = netip.MustParseAddr("192.0.0.1")
	extAddr   = netip.MustParseAddr("198.51.100.7")
	peerAddr  = netip.MustParseAddr("203.0.113.9")
	lanHost   = netip.MustParseAddr("192.0.2.10")
	b4Outer   = netip.MustParseAddr("2001:db8::b4")
	v6Client  = netip.MustParseAddr("2001:db8::1")
	testNonce = [NonceLen]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
)

// mapReq builds a MAP request Message from b4Addr.
func mapReq(lifetime uint32, proto uint8, port uint16, opts ...Option) *Message {
	return &Message{
		Opcode:   OpMap,
		Lifetime: lifetime,
		ClientIP: b4Addr,
		Map:      &MapData{Nonce: testNonce, Protocol: proto, InternalPort: port, ExternalIP: netip.IPv4Unspecified()},
		Options:  opts,
	}
}

func peerReq(lifetime uint32, proto uint8, port, remotePort uint16, opts ...Option) *Message {
	m := mapReq(lifetime, proto, port, opts...)
	m.Opcode = OpPeer
	m.Peer = &PeerData{RemotePort: remotePort, RemoteIP: peerAddr}
	return m
}

func mustMarshal(t testing.TB, m *Message) []byte {
	t.Helper()
	b, err := Marshal(m)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	return b
}

// fakeClock is a manual Clock: After waiters fire when Advance passes them.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
	added   chan time.Duration // each After's duration, in call order
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), added: make(chan time.Duration, 1024)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	f.mu.Lock()
	if d <= 0 {
		ch <- f.now
	} else {
		f.waiters = append(f.waiters, fakeWaiter{f.now.Add(d), ch})
	}
	f.mu.Unlock()
	f.added <- d
	return ch
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	kept := f.waiters[:0]
	for _, w := range f.waiters {
		if !w.at.After(f.now) {
			w.ch <- f.now
		} else {
			kept = append(kept, w)
		}
	}
	f.waiters = kept
}

// nextAfter waits for the next After call.
func (f *fakeClock) nextAfter(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-f.added:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("no timer was started")
		return 0
	}
}

// seqRand returns its values in turn, then repeats the last.
type seqRand struct {
	mu sync.Mutex
	v  []float64
}

func (s *seqRand) Float64() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.v[0]
	if len(s.v) > 1 {
		s.v = s.v[1:]
	}
	return x
}

// dgramConn is one end of an in-memory datagram link: each Write is one
// datagram in out, each Read takes one from in.
type dgramConn struct {
	in, out chan []byte
	local   net.Addr
	once    sync.Once
	closed  chan struct{}
	mu      sync.Mutex
	dl      chan struct{} // closed when the read deadline has passed
}

func newDgramConn(local netip.Addr) *dgramConn {
	return &dgramConn{
		in:     make(chan []byte, 64),
		out:    make(chan []byte, 64),
		local:  net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 40000)),
		closed: make(chan struct{}),
		dl:     make(chan struct{}),
	}
}

func (c *dgramConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	dl := c.dl
	c.mu.Unlock()
	select {
	case p := <-c.in:
		return copy(b, p), nil
	case <-c.closed:
		return 0, net.ErrClosed
	case <-dl:
		return 0, os.ErrDeadlineExceeded
	}
}

func (c *dgramConn) Write(b []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.out <- append([]byte(nil), b...)
	return len(b), nil
}

func (c *dgramConn) Close() error        { c.once.Do(func() { close(c.closed) }); return nil }
func (c *dgramConn) LocalAddr() net.Addr { return c.local }
func (c *dgramConn) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: net.IP(aftrAddr.AsSlice()), Port: ServerPort}
}
func (c *dgramConn) SetDeadline(time.Time) error { return nil }
func (c *dgramConn) SetWriteDeadline(time.Time) error {
	return nil
}

func (c *dgramConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.dl:
		c.dl = make(chan struct{})
	default:
	}
	if !t.IsZero() && !t.After(time.Now()) {
		close(c.dl)
	}
	return nil
}

// checkNoLeak fails the test if goroutines started during it outlive it.
func checkNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:n])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// fakeHandler answers every MAP and PEER with resp and records requests.
type fakeHandler struct {
	mu   sync.Mutex
	resp Response
	reqs []*Request
}

func (h *fakeHandler) Map(r *Request) Response {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reqs = append(h.reqs, cloneRequest(r))
	return h.resp
}

// cloneRequest copies r deeply: the server reuses r once Map returns
// (Handler).
func cloneRequest(r *Request) *Request {
	c := *r
	m := *r.Message
	if m.Map != nil {
		md := *m.Map
		m.Map = &md
	}
	if m.Peer != nil {
		pd := *m.Peer
		m.Peer = &pd
	}
	m.Options = nil
	for _, o := range r.Message.Options {
		m.Options = append(m.Options, Option{Code: o.Code, Data: bytes.Clone(o.Data)})
	}
	m.Payload = bytes.Clone(m.Payload)
	c.Message = &m
	if r.PortSet != nil {
		ps := *r.PortSet
		c.PortSet = &ps
	}
	c.Filters = slices.Clone(r.Filters)
	return &c
}

func (h *fakeHandler) last() *Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.reqs) == 0 {
		return nil
	}
	return h.reqs[len(h.reqs)-1]
}

type fakePeerHandler struct{ fakeHandler }

func (h *fakePeerHandler) Peer(r *Request) Response { return h.Map(r) }
