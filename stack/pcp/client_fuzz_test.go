package pcp

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// fuzzMapRequests are the pending MAPs FuzzClientInput answers: the B4's
// (PROTOCOL.md §8 item 1: protocol 0, port 0, PORT_SET), a plain TCP MAP,
// and a PREFER_FAILURE one (§13.2: a success must grant the suggestion).
var fuzzMapRequests = []MapRequest{
	{Lifetime: 7200, PortSet: &PortSet{Size: 65535}},
	{Protocol: 6, InternalPort: 8080, Lifetime: 3600},
	{Protocol: 17, InternalPort: 5000, SuggestedIP: extAddr, SuggestedPort: 5000, Lifetime: 600, PreferFailure: true},
}

// fuzzDatagrams splits b into datagrams, each a 2-octet big-endian length
// and that many octets (the last one cut short if b ends early).
func fuzzDatagrams(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= 2 {
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		n = min(n, len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// answers is what must answer req among the datagrams, by RFC 6887
// §8.3, §9, §11.3 and §13.2, judged on the octets as received: the first
// one that is a response (R set) with UNSUPP_VERSION for the MAP opcode
// (which can be matched no further, §9), or a well-formed version 2 MAP
// response whose nonce, protocol and internal port are the request's,
// with no THIRD_PARTY (none was asked), and, when PREFER_FAILURE was
// asked, granting exactly the suggestion if it succeeds. It returns -1
// when none does.
func answers(req MapRequest, dgrams [][]byte) int {
	for i, d := range dgrams {
		if len(d) < 4 || d[1]&0x80 == 0 || Opcode(d[1]&0x7f) != OpMap {
			continue
		}
		if ResultCode(d[3]) == UnsuppVersion {
			return i
		}
		m, err := Parse(d)
		if err != nil || d[0] != Version || len(d) < HeaderLen+MapDataLen {
			continue
		}
		o := d[HeaderLen:]
		if [NonceLen]byte(o[:NonceLen]) != testNonce || o[12] != req.Protocol || binary.BigEndian.Uint16(o[16:]) != req.InternalPort {
			continue
		}
		if _, ok := m.Option(OptThirdParty); ok {
			continue
		}
		if req.PreferFailure && d[3] == byte(Success) &&
			(binary.BigEndian.Uint16(o[18:]) != req.SuggestedPort || netip.AddrFrom16([16]byte(o[20:36])).Unmap() != req.SuggestedIP) {
			continue
		}
		return i
	}
	return -1
}

// FuzzClientInput gives a Client with a pending MAP arbitrary datagrams
// from its server, ANNOUNCEs with any Epoch among them. The client must not
// panic, and the MAP must complete exactly when a datagram answers it by
// the RFC's matching rules (answers), with that datagram's result: never
// with one that does not match, never stay pending when one did. The
// first input octet picks the request. Seeds: testdata/fuzz/FuzzClientInput.
func FuzzClientInput(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		req := fuzzMapRequests[int(b[0])%len(fuzzMapRequests)]
		dgrams := fuzzDatagrams(b[1:])

		clk := newFakeClock()
		conn := newDgramConn(b4Addr)
		var losses atomic.Int32
		c := NewClient(conn, ClientConfig{Nonce: &testNonce, Clock: clk, Rand: &seqRand{v: []float64{0.5}},
			OnStateLoss: func() { losses.Add(1) }})
		ctx, cancel := context.WithCancel(context.Background())
		runErr := make(chan error, 1)
		go func() { runErr <- c.Run(ctx) }()
		res := make(chan mapResult, 1)
		go func() {
			m, err := c.Map(ctx, req)
			res <- mapResult{m, err}
		}()
		defer func() {
			cancel()
			<-res
			if err := <-runErr; !errors.Is(err, context.Canceled) {
				t.Errorf("Run = %v", err)
			}
			conn.Close()
		}()
		select {
		case <-conn.out: // the request is pending
		case <-time.After(10 * time.Second):
			t.Fatal("the MAP was never sent")
		}
		for _, d := range dgrams {
			c.Input(d)
		}

		want := answers(req, dgrams)
		if want < 0 {
			// Still pending and unanswered: Map returns only on an answer
			// while ctx lives and Run runs.
			c.mu.Lock()
			answered := len(c.pending) == 0
			for p := range c.pending {
				answered = answered || len(p.ch) > 0
			}
			c.mu.Unlock()
			if answered {
				t.Fatalf("the MAP completed with none of %d datagrams answering it", len(dgrams))
			}
			return
		}
		var r mapResult
		select {
		case r = <-res:
			res <- r // for the deferred wait
		case <-time.After(10 * time.Second):
			t.Fatalf("datagram %d answers the MAP, which is still pending: % x", want, dgrams[want])
		}
		d := dgrams[want]
		if ResultCode(d[3]) != Success {
			var re *ResultError
			if !errors.As(r.err, &re) || re.Code != ResultCode(d[3]) {
				t.Fatalf("MAP = %v, %v; want result %v from datagram %d", r.m, r.err, ResultCode(d[3]), want)
			}
			return
		}
		if r.err != nil {
			t.Fatalf("MAP = %v; datagram %d grants it: % x", r.err, want, d)
		}
		o := d[HeaderLen:]
		if r.m.ExternalPort != binary.BigEndian.Uint16(o[18:]) || r.m.ExternalIP != netip.AddrFrom16([16]byte(o[20:36])).Unmap() ||
			r.m.Lifetime > time.Duration(binary.BigEndian.Uint32(d[4:]))*time.Second {
			t.Fatalf("mapping %+v from datagram %d: % x", r.m, want, d)
		}
	})
}
