package lanpcp

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/b4/nat"
	"github.com/lw4o6/lw4o6/stack/pcp"
	"github.com/lw4o6/lw4o6/stack/portset"
)

// Documentation and benchmark addresses only.
var (
	hostA   = netip.MustParseAddr("198.18.0.2")
	hostB   = netip.MustParseAddr("198.18.0.3")
	public  = netip.MustParseAddr("192.0.2.7")
	remote  = netip.MustParseAddr("203.0.113.10")
	remote2 = netip.MustParseAddr("203.0.113.11")
	// The set holds 5350 and 5351, which must never be mapped.
	testSet = portset.Range{First: 5120, Size: 256}
	nonce1  = [12]byte{1}
	nonce2  = [12]byte{2}
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t   testing.TB
	clk *fakeClock
	nat *nat.Table
	srv *Server
}

// newFixture builds a server over a NAT provisioned with public and
// testSet (unless unprovisioned), on a fake clock; mod adjusts the config.
func newFixture(t testing.TB, provisioned bool, mod func(*Config)) *fixture {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	f := &fixture{t: t, clk: clk, nat: nat.New(nat.Config{Now: clk.Now})}
	cfg := Config{Now: clk.Now, Rate: 1e6, Burst: 1e6}
	if mod != nil {
		mod(&cfg)
	}
	f.srv = New(cfg, f.nat)
	if provisioned {
		f.provision(public, testSet)
	}
	return f
}

func (f *fixture) provision(a netip.Addr, set portset.Set) []ForwardStatus {
	if err := f.nat.SetExternal(a, set); err != nil {
		f.t.Fatal(err)
	}
	return f.srv.Provisioned(a, set)
}

type mapOpts struct {
	proto     uint8
	iport     uint16
	lifetime  uint32
	nonce     [12]byte
	suggested uint16
	opts      []pcp.Option
	client    netip.Addr // Client IP field; zero: the source
}

func mapReq(t testing.TB, src netip.Addr, o mapOpts) []byte {
	t.Helper()
	client := o.client
	if !client.IsValid() {
		client = src
	}
	b, err := pcp.Marshal(&pcp.Message{
		Opcode: pcp.OpMap, Lifetime: o.lifetime, ClientIP: client,
		Map:     &pcp.MapData{Nonce: o.nonce, Protocol: o.proto, InternalPort: o.iport, ExternalPort: o.suggested, ExternalIP: netip.IPv4Unspecified()},
		Options: o.opts,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func peerReq(t testing.TB, src netip.Addr, proto uint8, iport uint16, lifetime uint32, nonce [12]byte, rem netip.AddrPort) []byte {
	t.Helper()
	b, err := pcp.Marshal(&pcp.Message{
		Opcode: pcp.OpPeer, Lifetime: lifetime, ClientIP: src,
		Map:  &pcp.MapData{Nonce: nonce, Protocol: proto, InternalPort: iport, ExternalIP: netip.IPv4Unspecified()},
		Peer: &pcp.PeerData{RemotePort: rem.Port(), RemoteIP: rem.Addr()},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// do sends req from src:40000 and parses the PCP answer.
func (f *fixture) do(src netip.Addr, req []byte) *pcp.Message {
	f.t.Helper()
	out := f.srv.Handle(req, netip.AddrPortFrom(src, 40000))
	if out == nil {
		f.t.Fatal("no answer")
	}
	m, err := pcp.Parse(out)
	if err != nil {
		f.t.Fatalf("answer does not parse: %v (%x)", err, out)
	}
	return m
}

func (f *fixture) mapOK(src netip.Addr, o mapOpts) *pcp.Message {
	f.t.Helper()
	m := f.do(src, mapReq(f.t, src, o))
	if m.Result != pcp.Success {
		f.t.Fatalf("MAP %+v: %v", o, m.Result)
	}
	f.checkAnswer(m)
	return m
}

// checkAnswer asserts the invariants of every successful answer: the
// public address, a port in the set, never 5350/5351.
func (f *fixture) checkAnswer(m *pcp.Message) {
	f.t.Helper()
	if m.Map == nil || (m.Opcode == pcp.OpMap && m.Lifetime == 0) {
		return
	}
	if m.Map.ExternalIP != public {
		f.t.Errorf("answer names %v, want %v", m.Map.ExternalIP, public)
	}
	if p := m.Map.ExternalPort; !testSet.Contains(p) || p == 5350 || p == 5351 {
		f.t.Errorf("answer names port %d", p)
	}
}

func (f *fixture) code(src netip.Addr, req []byte) (pcp.ResultCode, uint32) {
	f.t.Helper()
	m := f.do(src, req)
	return m.Result, m.Lifetime
}

// pmp builds a NAT-PMP mapping request.
func pmp(op uint8, iport, suggested uint16, lifetime uint32) []byte {
	b := make([]byte, 12)
	b[1] = op
	binary.BigEndian.PutUint16(b[4:], iport)
	binary.BigEndian.PutUint16(b[6:], suggested)
	binary.BigEndian.PutUint32(b[8:], lifetime)
	return b
}

type pmpAnswer struct {
	op               uint8
	result           uint16
	epoch            uint32
	iport, ext       uint16
	lifetime         uint32
	addr             netip.Addr
	raw              []byte
	internalEchoPort uint16
}

func (f *fixture) pmp(src netip.Addr, req []byte) pmpAnswer {
	f.t.Helper()
	out := f.srv.Handle(req, netip.AddrPortFrom(src, 40001))
	if len(out) < 8 || out[0] != 0 {
		f.t.Fatalf("NAT-PMP answer %x", out)
	}
	a := pmpAnswer{op: out[1], result: binary.BigEndian.Uint16(out[2:]), epoch: binary.BigEndian.Uint32(out[4:]), raw: out}
	switch {
	case len(out) == 12 && out[1] == 128:
		a.addr = netip.AddrFrom4([4]byte(out[8:12]))
	case len(out) == 16:
		a.iport, a.ext, a.lifetime = binary.BigEndian.Uint16(out[8:]), binary.BigEndian.Uint16(out[10:]), binary.BigEndian.Uint32(out[12:])
	}
	return a
}
