package aftr

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/pcp"
)

// b4In is a B4 address in its own /64: 2001:db8:100:i::1.
func b4In(i int) netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("2001:db8:100:%x::1", i))
}

// answers counts the PCP answers sent to b4 since the last take, each a
// SUCCESS.
func (r *rig) pcpAnswers(b4 netip.Addr) int {
	r.t.Helper()
	n := 0
	for _, p := range r.access.take() {
		if m := r.pcpReply(b4, p); m.Result != pcp.Success {
			r.t.Fatalf("answer %v, want SUCCESS", m.Result)
		}
		n++
	}
	return n
}

// Issue 11 item 6: one B4 flooding the AFTR with 10 000 MAPs at one
// instant gets its bucket's worth answered (PCPBurstPerB4), the rest
// dropped unanswered and counted; another B4's request in the middle of
// the flood is answered. Once the bucket refills (PCPRatePerB4), the
// flooder is answered again at that rate.
func TestPCPRateLimitPerB4(t *testing.T) {
	r := newRig(t, func(c *Config) { c.PCPRate = 1e6 }) // the per-B4 limit alone
	burst, rate := r.cfg.PCPBurstPerB4, r.cfg.PCPRatePerB4
	if burst != 10 || rate != 2 {
		t.Fatalf("DefaultConfig per-B4 limit %v/s burst %d, want 2/s burst 10", rate, burst)
	}
	const flood = 10000
	req := pcpPacket(tB4A, b4Req(1, 3600).marshal(t))
	for i := range flood {
		r.a.FromAccess(req)
		if i == flood/2 {
			if got := r.pcpAnswers(tB4A); got != burst {
				t.Fatalf("flooding B4: %d answers in the first half, want %d", got, burst)
			}
			granted(t, r.pcp(tB4B, b4Req(2, 3600))) // another B4, in the flood
		}
	}
	if got := r.pcpAnswers(tB4A); got != 0 {
		t.Errorf("flooding B4: %d answers in the second half, want 0", got)
	}
	if got, want := r.counter("drop-pcp-over-rate-limit-b4"), uint64(flood-burst); got != want {
		t.Errorf("drop-pcp-over-rate-limit-b4 %d, want %d", got, want)
	}
	if got, want := r.counter("in-pcp"), uint64(burst+1); got != want {
		t.Errorf("in-pcp %d, want %d (only what passed the limit is handled)", got, want)
	}
	if got := r.counter("drop-pcp-over-rate-limit-global"); got != 0 {
		t.Errorf("drop-pcp-over-rate-limit-global %d, want 0", got)
	}

	// One second later: the bucket holds rate tokens again.
	r.clock.Advance(time.Second)
	for range 100 {
		r.a.FromAccess(req)
	}
	if got := r.pcpAnswers(tB4A); got != int(rate) {
		t.Errorf("a second later: %d answers, want %v", got, rate)
	}
	// A B4 elsewhere in the flooder's /64 shares its bucket (pcplimit.go).
	sameNet := netip.MustParseAddr("2001:db8:a::2")
	r.a.FromAccess(pcpPacket(sameNet, b4Req(3, 3600).marshal(t)))
	r.quiet()
}

// The global limit caps the requests of all B4s together, each within its
// own bucket; a B4 refused by the global bucket keeps its own token for its
// retransmission.
func TestPCPRateLimitGlobal(t *testing.T) {
	r := newRig(t, func(c *Config) { c.PCPRate, c.PCPRatePerB4 = 5, 0 })
	for i := range 20 {
		r.a.FromAccess(pcpPacket(b4In(i), b4Req(byte(i), 3600).marshal(t)))
	}
	if got := len(r.access.take()); got != 5 {
		t.Errorf("20 B4s at once under a global limit of 5/s: %d answers, want 5", got)
	}
	if got := r.counter("drop-pcp-over-rate-limit-global"); got != 15 {
		t.Errorf("drop-pcp-over-rate-limit-global %d, want 15", got)
	}
	r.clock.Advance(time.Second)
	for i := 5; i < 20; i++ {
		r.a.FromAccess(pcpPacket(b4In(i), b4Req(byte(i), 3600).marshal(t)))
	}
	if got := len(r.access.take()); got != 5 {
		t.Errorf("a second later: %d answers, want 5", got)
	}

	// Refund: a B4 with one token left, refused by the global bucket,
	// is answered on its retransmission once the global bucket refills,
	// though its own bucket has not.
	r = newRig(t, func(c *Config) { c.PCPRate, c.PCPRatePerB4, c.PCPBurstPerB4 = 1, 0.001, 2 })
	req := pcpPacket(tB4A, b4Req(1, 3600).marshal(t))
	r.a.FromAccess(req) // answered: A has 1 token left, the global none
	r.a.FromAccess(req) // global: dropped, A's token kept
	if got := r.pcpAnswers(tB4A); got != 1 {
		t.Fatalf("%d answers, want 1", got)
	}
	r.clock.Advance(time.Second)
	r.a.FromAccess(req)
	if got := r.pcpAnswers(tB4A); got != 1 {
		t.Errorf("retransmission after the global refill: %d answers, want 1 (the B4's token was kept)", got)
	}
	r.clock.Advance(time.Second)
	r.a.FromAccess(req)
	r.quiet()
	if b4, global := r.counter("drop-pcp-over-rate-limit-b4"), r.counter("drop-pcp-over-rate-limit-global"); b4 != 1 || global != 1 {
		t.Errorf("drops: per B4 %d, global %d; want 1 and 1", b4, global)
	}
}

// The per-B4 table is bounded: a /64 that finds it full of active buckets
// is held to the global limit only, counted; buckets idle for the refill
// time are forgotten to make room.
func TestPCPRateLimitTableFull(t *testing.T) {
	r := newRig(t, func(c *Config) { c.PCPRate = 1e6 })
	r.a.pcpLimit.max = 4
	for i := range 4 {
		granted(t, r.pcp(b4In(i), b4Req(byte(i), 3600)))
	}
	// A fifth /64: no bucket for it, so nothing but the global limit.
	req := pcpPacket(b4In(4), b4Req(4, 3600).marshal(t))
	for range 50 {
		r.a.FromAccess(req)
	}
	if got := r.pcpAnswers(b4In(4)); got != 50 {
		t.Errorf("table full: %d answers, want 50", got)
	}
	if got := r.counter("pcp-rate-limit-table-full"); got != 50 {
		t.Errorf("pcp-rate-limit-table-full %d, want 50", got)
	}
	if n := len(r.a.pcpLimit.b4s); n != 4 {
		t.Errorf("table holds %d buckets, want its bound 4", n)
	}
	// After the refill time (burst / rate = 5 s) the idle buckets go, and
	// the newcomer gets one of its own.
	r.clock.Advance(5 * time.Second)
	for range 50 {
		r.a.FromAccess(req)
	}
	if got := r.pcpAnswers(b4In(4)); got != r.cfg.PCPBurstPerB4 {
		t.Errorf("after the sweep: %d answers, want the burst %d", got, r.cfg.PCPBurstPerB4)
	}
	if n := len(r.a.pcpLimit.b4s); n != 1 {
		t.Errorf("table holds %d buckets after the sweep, want 1", n)
	}
}

// Provisioning systems are exempt (pcplimit.go): a bulk run names many
// B4s from one source.
func TestPCPRateLimitProvisionerExempt(t *testing.T) {
	r := newRig(t, func(c *Config) { c.PCPRate = 1 })
	for i := range 30 {
		granted(t, r.provision(thirdParty(b4In(i), byte(i), 3600)))
	}
	if b4, global := r.counter("drop-pcp-over-rate-limit-b4"), r.counter("drop-pcp-over-rate-limit-global"); b4 != 0 || global != 0 {
		t.Errorf("drops: per B4 %d, global %d; want none", b4, global)
	}
}

// Both limits off: nothing dropped, no limiter.
func TestPCPRateLimitOff(t *testing.T) {
	r := newRig(t, func(c *Config) { c.PCPRate, c.PCPRatePerB4 = 0, 0 })
	if r.a.pcpLimit != nil {
		t.Fatal("limiter built with both limits off")
	}
	req := pcpPacket(tB4A, b4Req(1, 3600).marshal(t))
	for range 100 {
		r.a.FromAccess(req)
	}
	if got := r.pcpAnswers(tB4A); got != 100 {
		t.Errorf("%d answers, want 100", got)
	}
}

func TestPCPRateConfigRefused(t *testing.T) {
	for _, edit := range []func(*Config){
		func(c *Config) { c.PCPRate = -1 },
		func(c *Config) { c.PCPRatePerB4 = -1 },
		func(c *Config) { c.PCPBurstPerB4 = -1 },
	} {
		c := testConfig()
		edit(&c)
		if _, err := New(c, &fakeLink{}, &fakeLink{}); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
