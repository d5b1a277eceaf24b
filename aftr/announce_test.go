package aftr

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
)

var tGroup = netip.MustParseAddr("ff02::1")

// announceIn checks an ANNOUNCE in a softwire packet from tAFTR to dst
// (RFC 6887 §14.1.3: SUCCESS, lifetime 0, from 192.0.0.1:5351 to
// 224.0.0.1:5350) and returns its Epoch.
func (r *rig) announceIn(b []byte, dst netip.Addr, hop uint8) uint32 {
	r.t.Helper()
	var outer packet.IPv6
	ip4, err := packet.Decapsulate(b, &outer)
	if err != nil {
		r.t.Fatalf("not a softwire packet: %v", err)
	}
	if outer.SrcAddr() != tAFTR || outer.DstAddr() != dst || outer.HopLimit != hop {
		r.t.Fatalf("outer %v → %v hop limit %d, want %v → %v hop limit %d", outer.SrcAddr(), outer.DstAddr(), outer.HopLimit, tAFTR, dst, hop)
	}
	var u packet.UDP
	if err := packet.ParseUDP4(ip4, &u); err != nil {
		r.t.Fatalf("inner UDP: %v", err)
	}
	if ip4.SrcAddr() != tAFTR4 || ip4.DstAddr() != netip.MustParseAddr("224.0.0.1") || u.SrcPort != pcp.ServerPort || u.DstPort != 5350 || ip4.TTL() != 1 {
		r.t.Fatalf("inner %v:%d → %v:%d TTL %d", ip4.SrcAddr(), u.SrcPort, ip4.DstAddr(), u.DstPort, ip4.TTL())
	}
	m, err := pcp.Parse(u.Data)
	if err != nil || !m.Response || m.Opcode != pcp.OpAnnounce || m.Result != pcp.Success || m.Lifetime != 0 {
		r.t.Fatalf("not an unsolicited ANNOUNCE: %+v %v", m, err)
	}
	return m.Epoch
}

// series advances the clock copy by copy and returns the gaps between the
// copies sent to dst (the first one already taken).
func (r *rig) series(dst netip.Addr, hop uint8) []time.Duration {
	r.t.Helper()
	var gaps []time.Duration
	last := r.clock.Now()
	for i := 0; i < 20; i++ {
		next := r.a.sendDueAnnounces()
		for _, p := range r.access.take() {
			r.announceIn(p, dst, hop)
			gaps = append(gaps, r.clock.Now().Sub(last))
			last = r.clock.Now()
		}
		if next.IsZero() {
			break
		}
		r.clock.Advance(next.Sub(r.clock.Now()))
	}
	return gaps
}

// RFC 6887 §8.5 and §14.1.3: after a state loss the Epoch goes back to 0
// and the ANNOUNCE goes to the access network's group at once, then 9 more
// times, the first gap 250 ms and each later one doubled; a link-local
// group gets hop limit 1.
func TestAnnounceMulticastAfterStateLoss(t *testing.T) {
	r := newRig(t, func(c *Config) { c.AnnounceGroup = tGroup })
	r.clock.Advance(100 * time.Second)
	if e := r.a.Epoch(); e != 100 {
		t.Fatalf("Epoch %d before the loss", e)
	}
	r.a.AnnounceStateLoss()
	if e := r.announceIn(r.oneAccess(), tGroup, 1); e != 0 {
		t.Errorf("ANNOUNCE Epoch %d, want 0", e)
	}
	gaps := r.series(tGroup, 1)
	if len(gaps) != 9 {
		t.Fatalf("%d further copies (%v), want 9", len(gaps), gaps)
	}
	for i, g := range gaps {
		if want := 250 * time.Millisecond << i; g != want {
			t.Errorf("gap %d: %v, want %v", i, g, want)
		}
	}
	if n := r.counter("out-pcp-announce-multicast"); n != 10 {
		t.Errorf("out-pcp-announce-multicast %d, want 10", n)
	}
}

// Issue 7 item 2: during the window after a loss, a B4 the AFTR hears from
// without a binding gets the ICMPv6 1/5 and an ANNOUNCE into its softwire,
// once (further packets draw only 1/5); a bound B4 whose packet fails the
// check gets none; the series stops when the B4 has a binding again; the
// window closes after LifetimeMax.
func TestAnnounceUnicastToUnboundB4(t *testing.T) {
	r := newRig(t, nil)
	ipB, firstB, _ := r.bind(tB4B, 2)
	r.a.AnnounceStateLoss()
	r.quiet() // no group configured: nothing multicast
	up := func(b4 netip.Addr, src netip.Addr, port uint16) []byte {
		return encap(b4, tAFTR, udp4(src, tRemote, port, 53, 64, []byte("q")))
	}
	r.a.FromAccess(up(tB4A, netip.MustParseAddr("192.0.2.9"), 4096))
	out := r.access.take()
	if len(out) != 2 {
		t.Fatalf("%d packets to the unbound B4, want ICMPv6 1/5 and ANNOUNCE", len(out))
	}
	if m := r.icmp6To(out[0], tB4A); m.Type != packet.ICMPv6DstUnreachable || m.Code != 5 {
		t.Errorf("first packet ICMPv6 %d/%d, want 1/5", m.Type, m.Code)
	}
	r.announceIn(out[1], tB4A, r.cfg.HopLimit)
	r.a.FromAccess(up(tB4A, netip.MustParseAddr("192.0.2.9"), 4096))
	if out := r.access.take(); len(out) != 1 {
		t.Errorf("second packet drew %d packets, want the 1/5 only", len(out))
	}
	// B4 B is bound: a packet outside its set is no sign of lost state.
	r.a.FromAccess(up(tB4B, ipB, firstB-1))
	if out := r.access.take(); len(out) != 1 {
		t.Errorf("bound B4's stray packet drew %d packets, want the 1/5 only", len(out))
	}
	// Two copies later B4 A asks again: no more copies.
	for _, d := range []time.Duration{250 * time.Millisecond, 500 * time.Millisecond} {
		r.clock.Advance(d)
		r.a.sendDueAnnounces()
	}
	if n := len(r.access.take()); n != 2 {
		t.Errorf("%d copies in 0.75 s, want 2", n)
	}
	r.bind(tB4A, 1)
	r.clock.Advance(10 * time.Minute)
	if next := r.a.sendDueAnnounces(); !next.IsZero() {
		t.Errorf("a copy still pending at %v", next)
	}
	r.quiet()
	if n := r.counter("out-pcp-announce-unicast"); n != 3 {
		t.Errorf("out-pcp-announce-unicast %d, want 3", n)
	}
	// After LifetimeMax no binding from before the loss can be alive.
	r.clock.Advance(r.cfg.LifetimeMax)
	r.a.FromAccess(up(tB4C, netip.MustParseAddr("192.0.2.9"), 4096))
	if out := r.access.take(); len(out) != 1 {
		t.Errorf("after the window: %d packets, want the 1/5 only", len(out))
	}
}

// The lab's three modes: ICMPv6 1/5 only, ANNOUNCE only, both; and no
// ANNOUNCE at all without a loss.
func TestAnnounceModes(t *testing.T) {
	for _, tt := range []struct {
		name           string
		icmp, announce bool
		loss           bool
		want           int
	}{
		{"1/5 only", true, false, true, 1},
		{"ANNOUNCE only", false, true, true, 1},
		{"both", true, true, true, 2},
		{"no loss", true, true, false, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, func(c *Config) {
				c.ICMPv6OnBindingFailure, c.Announce, c.AnnounceGroup = tt.icmp, tt.announce, tGroup
			})
			if tt.loss {
				r.a.AnnounceStateLoss()
				r.access.take()
			}
			r.a.FromAccess(encap(tB4A, tAFTR, udp4(netip.MustParseAddr("192.0.2.9"), tRemote, 4096, 53, 64, nil)))
			if n := len(r.access.take()); n != tt.want {
				t.Errorf("%d packets, want %d", n, tt.want)
			}
			if e := r.a.Epoch(); tt.loss && e != 0 {
				t.Errorf("Epoch %d after the loss", e)
			}
		})
	}
}

// Memory and rate bounds: past the remembered-B4 limit and past the rate
// of first copies, B4s get no ANNOUNCE (counted); a rate-limited B4 is
// not remembered and gets one on a later packet.
func TestAnnounceBounded(t *testing.T) {
	r := newRig(t, func(c *Config) { c.ICMPv6OnBindingFailure = false })
	r.a.AnnounceStateLoss()
	b4 := func(i int) netip.Addr {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0xa, 14: byte(i >> 8), 15: byte(i)})
	}
	send := func(i int) int {
		r.a.FromAccess(encap(b4(i), tAFTR, udp4(netip.MustParseAddr("192.0.2.9"), tRemote, 4096, 53, 64, nil)))
		return len(r.access.take())
	}
	for i := range announceRate {
		if send(i) != 1 {
			t.Fatalf("B4 %d: no ANNOUNCE", i)
		}
	}
	if send(announceRate) != 0 || r.counter("drop-pcp-announce-over-rate-limit") != 1 {
		t.Fatalf("over the rate: %v", r.a.Counters())
	}
	r.clock.Advance(time.Second)
	if send(announceRate) != 1 {
		t.Fatal("rate-limited B4 not announced to later")
	}
	r.a.ann.max = announceRate + 1
	if send(announceRate+1) != 0 || r.counter("drop-pcp-announce-table-full") != 1 {
		t.Fatalf("over the table: %v", r.a.Counters())
	}
}

// Run starts with a state loss when nothing was restored (RFC 6887
// §14.1.3: a restart MUST be announced), and sends the copies as they
// fall due.
func TestRunAnnouncesWithoutRestoredState(t *testing.T) {
	r := newRig(t, func(c *Config) { c.AnnounceGroup = tGroup; c.Now = time.Now })
	r.clock = nil
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.a.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for r.a.Counters()["out-pcp-announce-multicast-packets"] < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := r.a.Counters()["out-pcp-announce-multicast-packets"]; n < 2 {
		t.Fatalf("%d ANNOUNCEs from Run, want the first two at least", n)
	}
	for _, p := range r.access.take() {
		r.announceIn(p, tGroup, 1)
	}
}
