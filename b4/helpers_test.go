package b4

import (
	"bytes"
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
)

// Documentation addresses only: RFC 3849, RFC 5737, RFC 2544, RFC 7335.
var (
	testB4     = netip.MustParseAddr("2001:db8:1::b4")
	testAFTR   = netip.MustParseAddr("2001:db8:ffff::1")
	testSpoof  = netip.MustParseAddr("2001:db8:bad::1")
	testOther6 = netip.MustParseAddr("2001:db8:1::99") // another B4
	testGW     = netip.MustParseAddr("198.18.0.1")
	testHost   = netip.MustParseAddr("198.18.0.2")
	testHost2  = netip.MustParseAddr("198.18.0.3")
	testPublic = netip.MustParseAddr("203.0.113.9")
	testRemote = netip.MustParseAddr("192.0.2.53") // an Internet host
	testFirst  = uint16(4096)                      // the set 4096-8191
	testSize   = uint16(4096)
)

func testConfig() Config {
	c := DefaultConfig()
	c.Addr, c.AFTR, c.Gateway = testB4, testAFTR, testGW
	return c
}

// handler is the fake AFTR's PCP Handler; the test sets its answer.
type handler struct {
	mu       sync.Mutex
	result   pcp.ResultCode
	lifetime uint32
	ip       netip.Addr
	first    uint16
	size     uint16
	echo     bool // answer with the request's own address and PORT_SET
	n        int  // requests served
}

func newHandler(lifetime uint32) *handler {
	return &handler{lifetime: lifetime, ip: testPublic, first: testFirst, size: testSize}
}

func (h *handler) set(f func(h *handler)) {
	h.mu.Lock()
	f(h)
	h.mu.Unlock()
}

func (h *handler) Map(r *pcp.Request) pcp.Response {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	if h.result != pcp.Success {
		return pcp.Response{Result: h.result, Lifetime: h.lifetime}
	}
	if h.echo && r.PortSet != nil {
		// A broken server: it grants what was asked, as it was asked.
		return pcp.Response{
			Lifetime:     h.lifetime,
			ExternalIP:   r.Message.Map.ExternalIP,
			ExternalPort: r.Message.Map.ExternalPort,
			PortSet:      r.PortSet,
		}
	}
	size := h.size
	if r.PortSet != nil && r.PortSet.Size < size {
		size = r.PortSet.Size // RFC 7753 §4.2: never more than asked
	}
	return pcp.Response{
		Lifetime:     h.lifetime,
		ExternalIP:   h.ip,
		ExternalPort: h.first,
		PortSet:      &pcp.PortSet{Size: size, FirstInternalPort: h.first},
	}
}

// pcpSeen is one PCP request the B4 sent into the softwire.
type pcpSeen struct {
	at    time.Time
	outer packet.IPv6
	inner packet.IPv4
	sport uint16
	raw   []byte // the PCP message
	msg   *pcp.Message
}

// fakeAFTR is the access side of the B4: it takes what the B4 sends,
// answers PCP requests (UDP to 192.0.0.1:5351 in 4in6) with a real
// pcp.Server and hands every other packet to the test.
type fakeAFTR struct {
	h        *handler
	srv      *pcp.Server
	epochOff atomic.Int64 // added to the server's clock: sets its Epoch
	silent   atomic.Bool  // leave PCP requests unanswered
	overflow atomic.Int64

	mu      sync.Mutex
	holding bool      // keep answers back until release
	held    []pcpSeen // requests waiting for release

	b    *B4
	in   chan []byte
	reqs chan pcpSeen
	data chan []byte // softwire packets other than PCP
	stop chan struct{}
	done chan struct{}
}

func newFakeAFTR(h *handler) *fakeAFTR {
	a := &fakeAFTR{
		h:    h,
		in:   make(chan []byte, 256),
		reqs: make(chan pcpSeen, 64),
		data: make(chan []byte, 64),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	a.srv = pcp.NewServer(pcp.ServerConfig{
		Handler: h,
		Now:     func() time.Time { return time.Now().Add(time.Duration(a.epochOff.Load())) },
	})
	return a
}

// Send is the B4's access Link: it copies and queues, never blocks (it
// runs on gVisor's goroutines for what the B4's own stack sends).
func (a *fakeAFTR) Send(pkt []byte) {
	select {
	case a.in <- bytes.Clone(pkt):
	default:
		a.overflow.Add(1)
	}
}

func (a *fakeAFTR) start(b *B4) {
	a.b = b
	go func() {
		defer close(a.done)
		for {
			select {
			case <-a.stop:
				return
			case pkt := <-a.in:
				a.handle(pkt)
			}
		}
	}()
}

func (a *fakeAFTR) close() {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	<-a.done
}

func (a *fakeAFTR) handle(pkt []byte) {
	var outer packet.IPv6
	ip4, err := packet.Decapsulate(pkt, &outer)
	var u packet.UDP
	if err == nil && ip4.Dst() == addrAFTR4 && packet.ParseUDP4(ip4, &u) == nil && u.DstPort == pcp.ServerPort {
		s := pcpSeen{at: time.Now(), outer: outer, inner: ip4, sport: u.SrcPort, raw: u.Data}
		s.msg, _ = pcp.Parse(u.Data)
		select {
		case a.reqs <- s:
		default:
			a.overflow.Add(1)
		}
		if a.silent.Load() {
			return
		}
		a.mu.Lock()
		if a.holding {
			a.held = append(a.held, s)
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
		a.answer(s)
		return
	}
	select {
	case a.data <- pkt:
	default:
		a.overflow.Add(1)
	}
}

func (a *fakeAFTR) answer(s pcpSeen) {
	// PROTOCOL.md §8 item 3: the client is the outer IPv6 source.
	if resp := a.srv.Handle(s.raw, s.inner.SrcAddr(), s.outer.SrcAddr()); resp != nil {
		a.b.FromAccess(a.toSelf(pcp.ServerPort, s.sport, resp))
	}
}

// hold keeps answers back until release, so that the test can look at the
// B4 between a request and its answer.
func (a *fakeAFTR) hold() {
	a.mu.Lock()
	a.holding = true
	a.mu.Unlock()
}

// release answers the requests held back and stops holding.
func (a *fakeAFTR) release() {
	a.mu.Lock()
	held := a.held
	a.holding, a.held = false, nil
	a.mu.Unlock()
	for _, s := range held {
		a.answer(s)
	}
}

// toSelf builds a softwire packet from the AFTR's 192.0.0.1:sport to the
// B4's 192.0.0.2:dport.
func (a *fakeAFTR) toSelf(sport, dport uint16, payload []byte) []byte {
	return softwire(testAFTR, testB4, 0, udp4(netip.AddrPortFrom(netip.AddrFrom4(addrAFTR4), sport),
		netip.AddrPortFrom(netip.AddrFrom4(addrB4), dport), 0, 64, payload))
}

// udp4 builds an IPv4/UDP packet.
func udp4(src, dst netip.AddrPort, tos, ttl uint8, payload []byte) []byte {
	b := packet.AppendUDP4(nil, 0, src.Addr().As4(), dst.Addr().As4(), src.Port(), dst.Port(), ttl, payload)
	if tos != 0 {
		packet.IPv4(b).SetTOS(tos)
	}
	return b
}

// softwire encapsulates ip4 (RFC 2473) from src to dst with traffic class
// tc (which may differ from the inner TOS).
func softwire(src, dst netip.Addr, tc uint8, ip4 []byte) []byte {
	s, d := src.As16(), dst.As16()
	out := packet.Encapsulate(bytes.Clone(ip4), 0, s, d, 64)
	packet.PutIPv6Header(out, tc, len(out)-packet.IPv6HeaderLen, packet.ProtoIPIP, 64, s, d)
	return out
}

// chanLink is the LAN Link: a copy of each packet goes to a channel; the
// LAN PCP server's announcements (to 224.0.0.1:5350) go to their own,
// which drops what nobody reads.
type chanLink struct {
	ch       chan []byte
	ann      chan []byte
	overflow atomic.Int64
}

func newChanLink() *chanLink { return &chanLink{ch: make(chan []byte, 64), ann: make(chan []byte, 64)} }

func (l *chanLink) Send(pkt []byte) {
	if len(pkt) >= 24 && [4]byte(pkt[16:20]) == allHosts && pkt[9] == packet.ProtoUDP {
		select {
		case l.ann <- bytes.Clone(pkt):
		default:
		}
		return
	}
	select {
	case l.ch <- bytes.Clone(pkt):
	default:
		l.overflow.Add(1)
	}
}

// env is one B4 between a LAN channel and a fake AFTR.
type env struct {
	t      testing.TB
	b      *B4
	aftr   *fakeAFTR
	h      *handler
	lan    *chanLink
	cancel context.CancelFunc
	ran    chan error // Run's result; nil until run
	once   sync.Once
}

// newEnv builds the B4 (Run not started); mod adjusts the config.
func newEnv(t testing.TB, h *handler, mod func(*Config)) *env {
	t.Helper()
	cfg := testConfig()
	if mod != nil {
		mod(&cfg)
	}
	e := &env{t: t, h: h, aftr: newFakeAFTR(h), lan: newChanLink()}
	b, err := New(cfg, e.lan, e.aftr)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.b = b
	e.aftr.start(b)
	t.Cleanup(e.stop)
	return e
}

func (e *env) run() {
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.ran = make(chan error, 1)
	go func() { e.ran <- e.b.Run(ctx) }()
}

// stop cancels Run, waits for it (Run must return promptly), closes the
// B4 and the fake AFTR. It is idempotent.
func (e *env) stop() {
	e.once.Do(func() {
		if e.cancel != nil {
			e.cancel()
			select {
			case err := <-e.ran:
				if err != nil {
					e.t.Errorf("Run: %v", err)
				}
			case <-time.After(5 * time.Second): // deleteWait included
				e.t.Errorf("Run did not return within 5 s of cancel")
				return // Close would race with Run
			}
		}
		e.aftr.close()
		e.b.Close()
		if n := e.aftr.overflow.Load() + e.lan.overflow.Load(); n > 0 {
			e.t.Errorf("%d packets lost to full test channels", n)
		}
	})
}

// provisioned starts Run and waits for the first answer.
func (e *env) provisioned() (pcpSeen, Status) {
	e.t.Helper()
	e.run()
	r := e.nextReq(2 * time.Second)
	s := waitStatus(e.t, e.b, 2*time.Second, "provisioned", func(s Status) bool { return s.Provisioned })
	return r, s
}

func (e *env) nextReq(d time.Duration) pcpSeen {
	e.t.Helper()
	select {
	case r := <-e.aftr.reqs:
		return r
	case <-time.After(d):
		e.t.Fatalf("no PCP request within %v", d)
		return pcpSeen{}
	}
}

func (e *env) noReq(d time.Duration) {
	e.t.Helper()
	select {
	case r := <-e.aftr.reqs:
		e.t.Fatalf("unexpected PCP request %+v", r.msg)
	case <-time.After(d):
	}
}

func (e *env) nextData(d time.Duration) []byte {
	e.t.Helper()
	select {
	case p := <-e.aftr.data:
		return p
	case <-time.After(d):
		e.t.Fatalf("nothing sent to the AFTR within %v", d)
		return nil
	}
}

func (e *env) nextLAN(d time.Duration) packet.IPv4 {
	e.t.Helper()
	select {
	case p := <-e.lan.ch:
		ip4, err := packet.ParseIPv4(p)
		if err != nil {
			e.t.Fatalf("LAN packet does not parse: %v", err)
		}
		return ip4
	case <-time.After(d):
		e.t.Fatalf("nothing sent to the LAN within %v", d)
		return nil
	}
}

// quiet fails if anything reaches the LAN or the AFTR (other than PCP)
// within d.
func (e *env) quiet(d time.Duration) {
	e.t.Helper()
	select {
	case p := <-e.lan.ch:
		e.t.Fatalf("unexpected packet to the LAN: %x", p)
	case p := <-e.aftr.data:
		e.t.Fatalf("unexpected packet to the AFTR: %x", p)
	case <-time.After(d):
	}
}

// waitStatus waits until ok holds for the B4's status.
func waitStatus(t testing.TB, b *B4, d time.Duration, what string, ok func(Status) bool) Status {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		ch := b.Changed()
		s := b.Status()
		if ok(s) {
			return s
		}
		select {
		case <-ch:
		case <-deadline.C:
			s = b.Status()
			t.Fatalf("%s: not reached within %v; status %+v", what, d, s)
		}
	}
}

func pkts(b *B4, name string) uint64 { return b.Status().Counters[name+"-packets"] }

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
