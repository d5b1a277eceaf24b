package lab

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/aftr"
	"github.com/lw4o6/lw4o6/b4"
)

// The aftr-restart scenario with ICMPv6 1/5 only (what RFC 7596 gives
// without ANNOUNCE): every busy B4 recovers on its next packets, getting
// its previous set back; idle B4s, with no packet of their own, learn
// nothing until their renewal and are reported as not recovered.
func TestFailoverICMPBusyAndIdle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := RunFailover(ctx, FailoverConfig{
		B4s: 10, Idle: 0.2, TCPFlows: 2, Failover: FailoverICMP,
		Pool: netip.MustParsePrefix("192.0.2.0/30"), PortsPerB4: 2048,
		Downtime: 300 * time.Millisecond, RecoverWithin: 10 * time.Second, Logger: testLogger,
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Busy != 8 || r.Idle != 2 || r.TCPFlows != 2 || len(r.PerB4) != 10 {
		t.Fatalf("busy %d idle %d tcp %d outcomes %d", r.Busy, r.Idle, r.TCPFlows, len(r.PerB4))
	}
	if r.BusyRecovery.Recovered != 8 || r.BusyRecovery.Of != 8 {
		t.Errorf("busy recovered %d of %d: %+v", r.BusyRecovery.Recovered, r.BusyRecovery.Of, r.PerB4)
	}
	if r.IdleRecovery.Recovered != 0 || r.IdleRecovery.Of != 2 || r.OK {
		t.Errorf("idle recovered %d of %d, ok %v: with ICMPv6 only an idle B4 has nothing to recover on", r.IdleRecovery.Recovered, r.IdleRecovery.Of, r.OK)
	}
	b := r.BusyRecovery
	if !(0 < b.P50MS && b.P50MS <= b.P99MS && b.P99MS <= b.MaxMS && b.MaxMS <= r.RecoverWithinMS) {
		t.Errorf("busy recovery p50 %v p99 %v max %v", b.P50MS, b.P99MS, b.MaxMS)
	}
	// Every busy B4 lost its probes of the downtime and (at least) the one
	// that drew the ICMPv6 1/5; none was answered by a dead AFTR.
	if r.Sent == 0 || r.Lost < r.LostAfterRestart || r.LostAfterRestart < uint64(r.Busy) {
		t.Errorf("sent %d lost %d lost after restart %d", r.Sent, r.Lost, r.LostAfterRestart)
	}
	// The new AFTR learned of each busy B4 by its traffic (1/5) and saw
	// its MAP; the idle ones asked nothing.
	if r.PCPRequests < uint64(r.Busy) || r.PCPPeakPer100ms == 0 || r.PCPPeakPer100ms > r.PCPRequests {
		t.Errorf("PCP requests %d, peak %d per 100 ms", r.PCPRequests, r.PCPPeakPer100ms)
	}
	if r.ICMPv6Sent < uint64(r.Busy) {
		t.Errorf("new AFTR sent %d ICMPv6 errors for %d busy B4s", r.ICMPv6Sent, r.Busy)
	}
	for _, o := range r.PerB4 {
		switch o.Role {
		case "busy", "busy+tcp":
			if !o.Recovered || o.RecoveryMS < 0 || o.BindingMS < 0 || !o.SameSet || o.Sent == 0 {
				t.Errorf("busy B4 %d: %+v", o.Index, o)
			}
		case "idle":
			if o.Recovered || o.RecoveryMS != -1 || o.Sent != 0 {
				t.Errorf("idle B4 %d: %+v", o.Index, o)
			}
			// It still believes in its old set, which the new AFTR does not hold.
			if o.After != o.Before || o.After == "unprovisioned" {
				t.Errorf("idle B4 %d: before %q after %q", o.Index, o.Before, o.After)
			}
		default:
			t.Errorf("B4 %d: role %q", o.Index, o.Role)
		}
		if (o.Role == "busy+tcp") != (o.TCP != "") {
			t.Errorf("B4 %d (%s): TCP %q", o.Index, o.Role, o.TCP)
		}
	}
	if r.MemoryPerB4Bytes == 0 || r.Goroutines == 0 {
		t.Errorf("memory per B4 %d, goroutines %d", r.MemoryPerB4Bytes, r.Goroutines)
	}
	for _, o := range r.PerB4[:2] {
		t.Logf("B4 %d: %+v", o.Index, o)
	}
	t.Logf("busy p50 %.0f p99 %.0f max %.0f ms; lost %d (%d after restart) of %d; TCP %d/%d; PCP %d peak %d/100ms; %d KiB per B4",
		b.P50MS, b.P99MS, b.MaxMS, r.Lost, r.LostAfterRestart, r.Sent, r.TCPSurvived, r.TCPFlows, r.PCPRequests, r.PCPPeakPer100ms, r.MemoryPerB4Bytes>>10)
}

// StopAFTR and StartAFTR: a new AFTR instance on the same addresses, with
// none of the old one's state; a LAN host's traffic draws the ICMPv6 1/5
// and its B4 is provisioned again by the new instance.
func TestAFTRRestartOnSameAddress(t *testing.T) {
	w := newWorld(t, Config{B4s: 2, PortsPerB4: 4096})
	ctx := testCtx(t)
	if r := w.Exchange(ctx, 0, 4096); r.Err != nil {
		t.Fatal(r.Err)
	}
	old := w.AFTR
	w.StopAFTR()
	if w.AFTR != nil {
		t.Fatal("World.AFTR set while stopped")
	}
	w.StopAFTR() // a no-op
	if err := w.StartAFTR(); err != nil {
		t.Fatal(err)
	}
	if err := w.StartAFTR(); err == nil {
		t.Fatal("a second StartAFTR while running succeeded")
	}
	if w.AFTR == old || len(w.AFTR.Bindings()) != 0 {
		t.Fatalf("new AFTR %p (old %p) holds %d bindings", w.AFTR, old, len(w.AFTR.Bindings()))
	}
	if r := w.Exchange(ctx, 0, 64<<10); r.Err != nil {
		t.Fatalf("after the restart: %v", r.Err)
	}
	if st := w.Nodes[0].B4.Status(); st.Provisionings < 2 || st.Counters["in-icmpv6-no-binding-packets"] == 0 {
		t.Fatalf("provisionings %d, ICMPv6 1/5 %d", st.Provisionings, st.Counters["in-icmpv6-no-binding-packets"])
	}
	if got := len(w.AFTR.Bindings()); got != 1 {
		t.Fatalf("new AFTR holds %d bindings, want B4 0's only (B4 1 sent nothing)", got)
	}
}

// The mode's AFTR knob: ICMPv6 1/5 on in icmp and both, off in announce.
func TestApplyFailoverICMP(t *testing.T) {
	for _, c := range []struct {
		mode Failover
		icmp bool
	}{{FailoverICMP, true}, {FailoverAnnounce, false}, {FailoverBoth, true}} {
		ac, bc := aftr.DefaultConfig(), b4.DefaultConfig()
		ac.ICMPv6OnBindingFailure = !c.icmp
		err := applyFailover(c.mode, "", &ac, &bc)
		if err != nil {
			t.Errorf("%s: %v", c.mode, err)
		}
		if ac.ICMPv6OnBindingFailure != c.icmp || !bc.ReprovisionOnICMP {
			t.Errorf("%s: AFTR ICMPv6 1/5 %v, B4 acts on it %v", c.mode, ac.ICMPv6OnBindingFailure, bc.ReprovisionOnICMP)
		}
	}
	if err := applyFailover("smoke-signals", "", nil, nil); err == nil {
		t.Error("an unknown mode was accepted")
	}
	if _, err := ParseFailover("ICMP"); err == nil {
		t.Error(`ParseFailover accepted "ICMP": mode names are lower case`)
	}
}
