package pcp

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"
)

// clientEnv is a Client wired to a Server over an in-memory datagram link,
// both on one fake clock.
type clientEnv struct {
	t      *testing.T
	clk    *fakeClock
	conn   *dgramConn
	c      *Client
	srv    *Server
	h      *fakeHandler
	lost   chan struct{}
	ctx    context.Context
	runErr chan error
}

// newClientEnv starts Run. When serve is set a goroutine answers every
// request with srv; otherwise the test plays the server on conn.out/in.
func newClientEnv(t *testing.T, rnd Rand, serve bool) *clientEnv {
	checkNoLeak(t)
	e := &clientEnv{t: t, clk: newFakeClock(), conn: newDgramConn(b4Addr), h: &fakeHandler{resp: okResp}, lost: make(chan struct{}, 8)}
	e.srv = NewServer(ServerConfig{Now: e.clk.Now, Handler: e.h})
	e.c = NewClient(e.conn, ClientConfig{
		Nonce: &testNonce, Clock: e.clk, Rand: rnd,
		OnStateLoss: func() { e.lost <- struct{}{} },
	})
	ctx, cancel := context.WithCancel(context.Background())
	e.ctx = ctx
	e.runErr = make(chan error, 1)
	go func() { e.runErr <- e.c.Run(ctx) }()
	done := make(chan struct{})
	if serve {
		go func() {
			defer close(done)
			for {
				select {
				case b := <-e.conn.out:
					if out := e.srv.Handle(b, b4Addr, b4Outer); out != nil {
						e.conn.in <- out
					}
				case <-e.conn.closed:
					return
				}
			}
		}()
	} else {
		close(done)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-e.runErr:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return")
		}
		e.conn.Close()
		<-done
	})
	return e
}

// sent waits for the next datagram the client writes.
func (e *clientEnv) sent() []byte {
	e.t.Helper()
	select {
	case b := <-e.conn.out:
		return b
	case <-time.After(5 * time.Second):
		e.t.Fatal("nothing sent")
		return nil
	}
}

func (e *clientEnv) noneSent() {
	e.t.Helper()
	select {
	case b := <-e.conn.out:
		e.t.Fatalf("unexpected datagram %x", b)
	case <-time.After(20 * time.Millisecond):
	}
}

func (e *clientEnv) drainTimers() {
	for {
		select {
		case <-e.clk.added:
		default:
			return
		}
	}
}

type mapResult struct {
	m   *Mapping
	err error
}

func (e *clientEnv) goMap(ctx context.Context, req MapRequest) chan mapResult {
	ch := make(chan mapResult, 1)
	go func() {
		m, err := e.c.Map(ctx, req)
		ch <- mapResult{m, err}
	}()
	return ch
}

func wait[T any](t *testing.T, ch chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("timed out")
		var zero T
		return zero
	}
}

var b4Request = MapRequest{Lifetime: 7200, PortSet: &PortSet{Size: 65535}}

func TestClientRetransmitTiming(t *testing.T) {
	t.Run("RFC6887 §8.1.1: RAND 0 doubles from IRT to the MRT cap", func(t *testing.T) {
		e := newClientEnv(t, &seqRand{v: []float64{0.5}}, false)
		res := e.goMap(e.ctx, b4Request)
		want := []time.Duration{3, 6, 12, 24, 48, 96, 192, 384, 768, 1024, 1024, 1024}
		first := e.sent()
		for i, w := range want {
			if i > 0 {
				if b := e.sent(); !bytes.Equal(b, first) {
					t.Fatalf("§8.1.1: retransmission %d differs:\n%x\n%x", i, b, first)
				}
			}
			if d := e.clk.nextAfter(t); d != w*time.Second {
				t.Fatalf("RT %d = %v, want %v", i, d, w*time.Second)
			}
			e.clk.Advance(w * time.Second)
		}
		e.sent()
		e.conn.in <- e.srv.Handle(first, b4Addr, nil)
		if r := wait(t, res); r.err != nil || r.m.ExternalPort != 4096 {
			t.Fatalf("Map = %+v, %v", r.m, r.err)
		}
	})
	t.Run("RFC6887 §8.1.1: RAND at -0.1 and +0.1", func(t *testing.T) {
		e := newClientEnv(t, &seqRand{v: []float64{0, 1, 0, 1}}, false)
		ctx, cancel := context.WithCancel(e.ctx)
		res := e.goMap(ctx, b4Request)
		e.sent()
		// 0.9·3 s; 1.1·min(2·2.7, 1024); 0.9·min(2·5.94, 1024); 1.1·...
		prev := time.Duration(0)
		for i, f := range []float64{0.9, 1.1, 0.9, 1.1} {
			base := IRT
			if prev > 0 {
				base = min(2*prev, MRT)
			}
			want := time.Duration(float64(base) * f)
			d := e.clk.nextAfter(t)
			if d != want {
				t.Fatalf("RT %d = %v, want %v", i, d, want)
			}
			prev = d
			e.clk.Advance(d)
			e.sent()
		}
		cancel()
		if r := wait(t, res); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("Map = %v", r.err)
		}
	})
	t.Run("RFC6887 §8.1.1: random RAND within bounds, MRC = MRD = 0", func(t *testing.T) {
		e := newClientEnv(t, rand.New(rand.NewPCG(1, 2)), false)
		ctx, cancel := context.WithCancel(e.ctx)
		res := e.goMap(ctx, b4Request)
		e.sent()
		prev := time.Duration(0)
		for i := range 20 { // well past the cap: no give-up
			base := IRT
			if prev > 0 {
				base = min(2*prev, MRT)
			}
			d := e.clk.nextAfter(t)
			if lo, hi := time.Duration(float64(base)*0.9), time.Duration(float64(base)*1.1); d < lo || d > hi {
				t.Fatalf("RT %d = %v outside [%v, %v]", i, d, lo, hi)
			}
			prev = d
			e.clk.Advance(d)
			e.sent()
		}
		if prev > time.Duration(float64(MRT)*1.1) {
			t.Fatalf("RT %v over 1.1·MRT", prev)
		}
		cancel()
		wait(t, res)
	})
}

func TestClientMapSuccess(t *testing.T) {
	e := newClientEnv(t, nil, true)
	e.h.resp = Response{Lifetime: 0xffffffff, ExternalIP: extAddr, ExternalPort: 4096, PortSet: &PortSet{Size: 4096, FirstInternalPort: 4096}}
	m, err := e.c.Map(e.ctx, b4Request)
	if err != nil {
		t.Fatal(err)
	}
	if m.ExternalIP != extAddr || m.ExternalPort != 4096 || m.PortSet == nil || *m.PortSet != (PortSet{Size: 4096, FirstInternalPort: 4096}) {
		t.Fatalf("mapping %+v", m)
	}
	if m.Lifetime != MaxLifetime {
		t.Fatalf("RFC6887 §15: lifetime %v not capped at 24 h", m.Lifetime)
	}
	if !m.Received.Equal(e.clk.Now()) || m.Expiry() != m.Received.Add(24*time.Hour) {
		t.Fatalf("times %v %v", m.Received, m.Expiry())
	}
	r := e.h.last()
	if r.Client != b4Outer || r.PortSet == nil || r.PortSet.Size != 65535 || r.Message.Map.Nonce != testNonce {
		t.Fatalf("server saw %+v", r)
	}
	if e.c.Nonce() != testNonce || e.c.ClientIP() != b4Addr {
		t.Fatal("Nonce/ClientIP")
	}
}

func TestClientRequestEncoding(t *testing.T) {
	e := newClientEnv(t, nil, false)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	e.goMap(ctx, b4Request)
	if got, want := e.sent(), unhex(t, b4RequestHex); !bytes.Equal(got, want) {
		t.Fatalf("PROTOCOL.md §8 item 1 request\n got %x\nwant %x", got, want)
	}
	// §15.1: a delete carries no suggestions.
	e.goMap(ctx, MapRequest{Protocol: 17, InternalPort: 80, SuggestedIP: extAddr, SuggestedPort: 80})
	m, _ := Parse(e.sent())
	if m.Lifetime != 0 || m.Map.ExternalPort != 0 || m.Map.ExternalIP != netip.IPv4Unspecified() {
		t.Fatalf("RFC6887 §15.1: delete %+v", m.Map)
	}
	// RFC 7753 §4: First Internal Port is the Internal Port.
	e.goMap(ctx, MapRequest{Protocol: 17, InternalPort: 5000, Lifetime: 60, PortSet: &PortSet{Size: 10}, Description: "rtp"})
	m, _ = Parse(e.sent())
	if ps, _, _ := m.PortSet(); ps.FirstInternalPort != 5000 || ps.Size != 10 {
		t.Fatalf("RFC7753 §4: %+v", ps)
	}
	if d, _, _ := m.Description(); d != "rtp" {
		t.Fatalf("description %q", d)
	}
}

func TestClientInvalidRequests(t *testing.T) {
	e := newClientEnv(t, nil, false)
	for _, tc := range []struct {
		name string
		req  MapRequest
	}{
		{"RFC7753 §4.1: PREFER_FAILURE with PORT_SET", MapRequest{Protocol: 6, InternalPort: 80, SuggestedPort: 80, Lifetime: 60, PreferFailure: true, PortSet: &PortSet{Size: 2}}},
		{"RFC6887 §13.2: PREFER_FAILURE without suggested port", MapRequest{Protocol: 6, InternalPort: 80, Lifetime: 60, PreferFailure: true}},
		{"RFC6887 §13.3: FILTER in a delete", MapRequest{Protocol: 6, InternalPort: 80, Filters: []Filter{{}}}},
		{"RFC6887 §13.3: FILTER prefix 40 for IPv4", MapRequest{Protocol: 6, InternalPort: 80, Lifetime: 60, Filters: []Filter{{PrefixLen: 40, RemoteIP: peerAddr}}}},
		{"RFC6887 §11.1: protocol 0 with a port", MapRequest{InternalPort: 80, Lifetime: 60}},
		{"RFC6887 §13.1: THIRD_PARTY is ourselves", MapRequest{Protocol: 6, InternalPort: 80, Lifetime: 60, ThirdParty: b4Addr}},
		{"RFC7753 §4: PORT_SET size 0", MapRequest{Protocol: 6, InternalPort: 80, Lifetime: 60, PortSet: &PortSet{}}},
		{"RFC7220 §2: DESCRIPTION not UTF-8", MapRequest{Protocol: 6, InternalPort: 80, Lifetime: 60, Description: "\xff"}},
	} {
		if _, err := e.c.Map(e.ctx, tc.req); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	e.noneSent()
}

func TestClientMatching(t *testing.T) {
	e := newClientEnv(t, &seqRand{v: []float64{0.5}}, false)
	tpReq := MapRequest{Protocol: 6, InternalPort: 8080, Lifetime: 60, ThirdParty: lanHost}
	res := e.goMap(e.ctx, tpReq)
	req := e.sent()
	good := e.srv.Handle(req, b4Addr, nil) // THIRD_PARTY refused by default: an error response
	goodMsg, err := Parse(good)
	if err != nil || goodMsg.Result != UnsuppOption {
		t.Fatalf("server said %+v %v", goodMsg, err)
	}
	variant := func(f func(m *Message)) []byte {
		m, _ := Parse(good)
		f(m)
		return mustMarshal(t, m)
	}
	rClear := append([]byte(nil), good...)
	rClear[1] &^= 0x80
	for name, b := range map[string][]byte{
		"RFC6887 §8.3: R bit clear":             rClear,
		"RFC6887 §8.3: under 4 octets":          good[:3],
		"RFC6887 §8.3: under 24 octets":         good[:20],
		"RFC6887 §8.3: not a multiple of 4":     append(append([]byte(nil), good...), 0),
		"RFC6887 §8.3: other opcode":            variant(func(m *Message) { m.Opcode = OpPeer; m.Peer = &PeerData{} }),
		"RFC6887 §11.4: other nonce":            variant(func(m *Message) { m.Map.Nonce[0] ^= 1 }),
		"RFC6887 §11.4: other protocol":         variant(func(m *Message) { m.Map.Protocol = 17 }),
		"RFC6887 §11.4: other internal port":    variant(func(m *Message) { m.Map.InternalPort++ }),
		"RFC6887 §11.4: other internal address": variant(func(m *Message) { m.Options[0] = ThirdPartyOption(netip.MustParseAddr("192.0.2.11")) }),
		"RFC6887 §11.4: no internal address":    variant(func(m *Message) { m.Options = nil }),
	} {
		e.conn.in <- b
		select {
		case r := <-res:
			t.Fatalf("%s: accepted: %+v %v", name, r.m, r.err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	e.conn.in <- good
	r := wait(t, res)
	var re *ResultError
	if !errors.As(r.err, &re) || re.Code != UnsuppOption || re.Lifetime != LongErrorLifetime || re.Response == nil {
		t.Fatalf("Map = %+v %v", r.m, r.err)
	}
	if !errors.Is(r.err, &ResultError{Code: UnsuppOption}) || ResultOf(r.err) != UnsuppOption {
		t.Fatal("errors.Is / ResultOf on ResultError")
	}
}

func TestClientPreferFailureMismatch(t *testing.T) {
	e := newClientEnv(t, nil, false)
	req := MapRequest{Protocol: 6, InternalPort: 80, Lifetime: 60, SuggestedIP: extAddr, SuggestedPort: 8080, PreferFailure: true}
	res := e.goMap(e.ctx, req)
	b := e.sent()
	e.h.resp = Response{Lifetime: 60, ExternalIP: extAddr, ExternalPort: 9000}
	e.conn.in <- e.srv.Handle(b, b4Addr, nil) // a Mapping Update that crossed the request (§13.2)
	select {
	case r := <-res:
		t.Fatalf("RFC6887 §13.2: accepted a success for another port: %+v", r.m)
	case <-time.After(20 * time.Millisecond):
	}
	e.h.resp = Response{Lifetime: 60, ExternalIP: extAddr, ExternalPort: 8080}
	e.conn.in <- e.srv.Handle(b, b4Addr, nil)
	if r := wait(t, res); r.err != nil || r.m.ExternalPort != 8080 {
		t.Fatalf("Map = %+v %v", r.m, r.err)
	}
}

func TestClientErrorLifetime(t *testing.T) {
	e := newClientEnv(t, nil, true)
	e.h.resp = Response{Result: NotAuthorized, Lifetime: 100}
	_, err := e.c.Map(e.ctx, b4Request)
	var re *ResultError
	if !errors.As(err, &re) || re.Code != NotAuthorized || re.Lifetime != 100 {
		t.Fatalf("Map = %v", err)
	}
	e.h.resp = okResp
	n := len(e.h.reqs)
	e.clk.Advance(99 * time.Second)
	if _, err2 := e.c.Map(e.ctx, b4Request); err2 != err {
		t.Fatalf("RFC6887 §8.3: repeat within the error lifetime = %v", err2)
	}
	if len(e.h.reqs) != n {
		t.Fatal("RFC6887 §8.3: repeat was sent")
	}
	// Another request is not the same request.
	if _, err := e.c.Map(e.ctx, MapRequest{Protocol: 6, InternalPort: 22, Lifetime: 60}); err != nil {
		t.Fatalf("other request: %v", err)
	}
	e.clk.Advance(time.Second)
	if _, err := e.c.Map(e.ctx, b4Request); err != nil {
		t.Fatalf("after the error lifetime: %v", err)
	}
}

func TestClientNoResources(t *testing.T) {
	t.Run("RFC6887 §11.4: on a create, no new mappings", func(t *testing.T) {
		e := newClientEnv(t, nil, true)
		held := MapRequest{Protocol: 6, InternalPort: 22, Lifetime: 60}
		if _, err := e.c.Map(e.ctx, held); err != nil { // a mapping we hold
			t.Fatal(err)
		}
		e.h.resp = Response{Result: NoResources}
		if _, err := e.c.Map(e.ctx, b4Request); ResultOf(err) != NoResources {
			t.Fatalf("Map = %v", err)
		}
		e.h.resp = okResp
		n := len(e.h.reqs)
		if _, err := e.c.Map(e.ctx, MapRequest{Protocol: 6, InternalPort: 80, Lifetime: 60}); ResultOf(err) != NoResources {
			t.Fatalf("new mapping = %v", err)
		}
		if len(e.h.reqs) != n {
			t.Fatal("new mapping request was sent")
		}
		if _, err := e.c.Map(e.ctx, held); err != nil {
			t.Fatalf("renewal of a held mapping = %v", err)
		}
		if _, err := e.c.Map(e.ctx, MapRequest{Protocol: 6, InternalPort: 80}); err != nil {
			t.Fatalf("delete = %v", err)
		}
		e.clk.Advance(ShortErrorLifetime * time.Second)
		if _, err := e.c.Map(e.ctx, MapRequest{Protocol: 6, InternalPort: 80, Lifetime: 60}); err != nil {
			t.Fatalf("after 30 s: %v", err)
		}
	})
	t.Run("RFC6887 §11.4: on a delete, no requests at all", func(t *testing.T) {
		e := newClientEnv(t, nil, true)
		e.h.resp = Response{Result: NoResources}
		if _, err := e.c.Map(e.ctx, MapRequest{Protocol: 6, InternalPort: 80}); ResultOf(err) != NoResources {
			t.Fatalf("delete = %v", err)
		}
		if _, err := e.c.Announce(e.ctx); ResultOf(err) != NoResources {
			t.Fatalf("Announce = %v", err)
		}
		e.noneSent()
	})
}

func TestClientUnsuppVersion(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply func(req []byte) []byte
		want  uint32
	}{
		{"RFC6887 §9: NAT-PMP server, retry in 30 min", func(req []byte) []byte {
			return []byte{0, 0x80 | req[1], 0, 1, 0, 0, 0, 5} // RFC 6886 §3.5 error reply
		}, LongErrorLifetime},
		{"RFC6887 §9: other version, min(30 min, Lifetime)", func(req []byte) []byte {
			b := make([]byte, 24)
			b[0], b[1], b[3], b[7] = 3, 0x80|req[1], 1, 60
			return b
		}, 60},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newClientEnv(t, nil, false)
			res := e.goMap(e.ctx, b4Request)
			e.conn.in <- tc.reply(e.sent())
			r := wait(t, res)
			var re *ResultError
			if !errors.As(r.err, &re) || re.Code != UnsuppVersion || re.Lifetime != tc.want {
				t.Fatalf("Map = %v", r.err)
			}
			if _, err := e.c.Announce(e.ctx); err != r.err {
				t.Fatalf("Announce within the hold = %v", err)
			}
			e.noneSent()
		})
	}
}

func TestClientEpochCheckOnResponse(t *testing.T) {
	e := newClientEnv(t, nil, true)
	ep, err := e.c.Announce(e.ctx)
	if err != nil || ep != 0 {
		t.Fatalf("Announce = %d, %v", ep, err)
	}
	e.clk.Advance(100 * time.Second)
	if _, err := e.c.Map(e.ctx, b4Request); err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.lost:
		t.Fatal("RFC6887 §8.5: state loss on a good Epoch")
	case <-time.After(20 * time.Millisecond):
	}
	e.srv.ResetEpoch()
	e.clk.Advance(10 * time.Second)
	if _, err := e.c.Map(e.ctx, b4Request); err != nil {
		t.Fatal(err)
	}
	wait(t, e.lost) // §8.5: promptly, no wait on a solicited response
}

func TestClientAnnounceStateLoss(t *testing.T) {
	e := newClientEnv(t, &seqRand{v: []float64{0.5}}, true)
	e.clk.Advance(1000 * time.Second)
	if ep, err := e.c.Announce(e.ctx); err != nil || ep != 1000 {
		t.Fatalf("RFC6887 §14.1.2: Announce = %d, %v", ep, err)
	}
	// An unsolicited ANNOUNCE in range changes nothing.
	e.clk.Advance(60 * time.Second)
	e.drainTimers()
	e.conn.in <- e.srv.Announce()
	select {
	case <-e.lost:
		t.Fatal("state loss on an in-range ANNOUNCE")
	case d := <-e.clk.added:
		t.Fatalf("timer %v started for an in-range ANNOUNCE", d)
	case <-time.After(20 * time.Millisecond):
	}
	// The server restarts: Epoch back to 0.
	e.srv.ResetEpoch()
	e.conn.in <- e.srv.Announce()
	if d := e.clk.nextAfter(t); d != 2500*time.Millisecond {
		t.Fatalf("RFC6887 §14.1.3: wait %v, want 2.5 s (uniform 0-5 s)", d)
	}
	e.conn.in <- e.srv.Announce() // a second copy schedules nothing more
	select {
	case <-e.lost:
		t.Fatal("OnStateLoss before the wait")
	case <-time.After(20 * time.Millisecond):
	}
	e.clk.Advance(2500 * time.Millisecond)
	wait(t, e.lost)
	select {
	case <-e.lost:
		t.Fatal("OnStateLoss twice")
	case <-time.After(20 * time.Millisecond):
	}
}

func TestClientCancel(t *testing.T) {
	e := newClientEnv(t, nil, false)
	ctx, cancel := context.WithCancel(e.ctx)
	res := e.goMap(ctx, b4Request)
	e.sent()
	cancel()
	start := time.Now()
	if r := wait(t, res); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Map = %v", r.err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("Map slow to return")
	}
}

func TestClientCancelDuringStateLossWait(t *testing.T) {
	e := newClientEnv(t, &seqRand{v: []float64{0.9}}, true)
	if _, err := e.c.Announce(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(100 * time.Second)
	e.srv.ResetEpoch()
	e.drainTimers()
	e.conn.in <- e.srv.Announce()
	e.clk.nextAfter(t) // the 0-5 s wait is running; the cleanup cancels Run
}

func TestClientStopped(t *testing.T) {
	checkNoLeak(t)
	conn := newDgramConn(b4Addr)
	c := NewClient(conn, ClientConfig{Clock: newFakeClock()})
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(context.Background()) }()
	res := make(chan error, 1)
	go func() { _, err := c.Map(context.Background(), b4Request); res <- err }()
	<-conn.out
	conn.Close()
	if err := wait(t, runErr); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Run = %v", err)
	}
	if err := wait(t, res); !errors.Is(err, ErrStopped) {
		t.Fatalf("Map = %v", err)
	}
	if err := c.Run(context.Background()); err == nil {
		t.Fatal("second Run accepted")
	}
}

// TestClientUDPLoopback runs the client against the server over real UDP
// sockets on loopback, with the real clock.
func TestClientUDPLoopback(t *testing.T) {
	for _, network := range []struct{ net, addr string }{{"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"}} {
		t.Run(network.net, func(t *testing.T) {
			checkNoLeak(t)
			pc, err := net.ListenPacket(network.net, network.addr)
			if err != nil {
				t.Skipf("no %s loopback: %v", network.net, err)
			}
			defer pc.Close()
			h := &fakeHandler{resp: Response{Lifetime: 3600, ExternalIP: extAddr, ExternalPort: 2048, PortSet: &PortSet{Size: 1024, FirstInternalPort: 2048}}}
			srv := NewServer(ServerConfig{Handler: h})
			served := make(chan struct{})
			go func() {
				defer close(served)
				buf := make([]byte, 1500)
				for {
					n, from, err := pc.(*net.UDPConn).ReadFromUDPAddrPort(buf)
					if err != nil {
						return
					}
					if out := srv.Handle(buf[:n], from.Addr(), from); out != nil {
						pc.(*net.UDPConn).WriteToUDPAddrPort(out, from)
					}
				}
			}()
			conn, err := net.Dial(network.net, pc.LocalAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			c := NewClient(conn, ClientConfig{})
			ctx, cancel := context.WithCancel(context.Background())
			runErr := make(chan error, 1)
			go func() { runErr <- c.Run(ctx) }()
			m, err := c.Map(ctx, b4Request)
			if err != nil {
				t.Fatal(err)
			}
			if m.ExternalPort != 2048 || m.PortSet.Size != 1024 || m.Lifetime != time.Hour {
				t.Fatalf("mapping %+v", m)
			}
			if _, err := c.Announce(ctx); err != nil {
				t.Fatal(err)
			}
			cancel()
			if err := wait(t, runErr); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run = %v", err)
			}
			pc.Close()
			<-served
		})
	}
}

func TestClientPreferFailureAnyAddress(t *testing.T) {
	e := newClientEnv(t, nil, true)
	e.h.resp = Response{Lifetime: 60, ExternalIP: extAddr, ExternalPort: 8080}
	m, err := e.c.Map(e.ctx, MapRequest{Protocol: 6, InternalPort: 80, Lifetime: 60, SuggestedPort: 8080, PreferFailure: true})
	if err != nil || m.ExternalPort != 8080 {
		t.Fatalf("RFC6887 §13.2: no address preference: %+v %v", m, err)
	}
}

// An OnStateLoss that renews synchronously must not deadlock Run's exit.
func TestClientStateLossCallbackInMap(t *testing.T) {
	checkNoLeak(t)
	clk := newFakeClock()
	conn := newDgramConn(b4Addr)
	defer conn.Close()
	srv := NewServer(ServerConfig{Now: clk.Now})
	var c *Client
	inCallback := make(chan struct{})
	callbackErr := make(chan error, 1)
	c = NewClient(conn, ClientConfig{Clock: clk, Rand: &seqRand{v: []float64{0}}, OnStateLoss: func() {
		close(inCallback)
		_, err := c.Map(context.Background(), b4Request) // nobody answers
		callbackErr <- err
	}})
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(ctx) }()
	clk.Advance(100 * time.Second)
	conn.in <- srv.Announce() // first Epoch: 100
	srv.ResetEpoch()
	conn.in <- srv.Announce() // Epoch 0: state loss, wait 0 s
	<-inCallback
	<-conn.out // the renewal went out
	cancel()
	if err := wait(t, runErr); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
	if err := wait(t, callbackErr); !errors.Is(err, ErrStopped) {
		t.Fatalf("Map in callback = %v", err)
	}
}
