package lab

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// Issue 7, "journal deleted": the AFTR restarts with no state and
// announces it (RFC 6887 §14.1.3) to the access network's all-nodes group;
// every B4 — the idle ones too, with no traffic of their own — asks again
// for its previous address and set within 0-5 s and gets it back.
func TestFailoverAnnounceReprovisionsIdleB4s(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := RunFailover(ctx, FailoverConfig{
		B4s: 10, Idle: 0.4, TCPFlows: 2, Failover: FailoverAnnounce,
		Pool: netip.MustParsePrefix("192.0.2.0/30"), PortsPerB4: 2048,
		Downtime: 300 * time.Millisecond, RecoverWithin: 20 * time.Second, Logger: testLogger,
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Restored {
		t.Error("the new AFTR says it restored state it never had")
	}
	if r.BusyRecovery.Recovered != r.Busy || r.IdleRecovery.Recovered != r.Idle || !r.OK {
		t.Errorf("busy recovered %d of %d, idle %d of %d, ok %v", r.BusyRecovery.Recovered, r.Busy, r.IdleRecovery.Recovered, r.Idle, r.OK)
	}
	if r.SameSet != r.B4s {
		t.Errorf("%d of %d B4s got their previous set back", r.SameSet, r.B4s)
	}
	if r.ICMPv6Sent != 0 {
		t.Errorf("announce mode: the new AFTR sent %d ICMPv6 errors", r.ICMPv6Sent)
	}
	for _, o := range r.PerB4 {
		if !o.Recovered || !o.SameSet {
			t.Errorf("B4 %d (%s): %+v", o.Index, o.Role, o)
		}
	}
}

// Issue 7, "restart with the journal": nothing is lost. The new AFTR
// restores every binding, continues the Epoch (so no B4 re-provisions),
// and the TCP flows carry on across the restart.
func TestFailoverJournalKeepsEverything(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := RunFailover(ctx, FailoverConfig{
		B4s: 10, Idle: 0.2, TCPFlows: 3, Failover: FailoverBoth, Journal: true,
		Pool: netip.MustParsePrefix("192.0.2.0/30"), PortsPerB4: 2048,
		Downtime: 300 * time.Millisecond, RecoverWithin: 10 * time.Second, Logger: testLogger,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Restored {
		t.Fatal("the new AFTR did not restore its journal")
	}
	if !r.OK || r.SameSet != r.B4s {
		t.Errorf("ok %v, same set %d of %d", r.OK, r.SameSet, r.B4s)
	}
	if r.TCPSurvived != r.TCPFlows {
		t.Errorf("%d of %d TCP flows survived the restart", r.TCPSurvived, r.TCPFlows)
	}
	// Nothing was lost, so nothing is asked again: at most renewals.
	if r.ICMPv6Sent != 0 {
		t.Errorf("the restored AFTR sent %d ICMPv6 1/5", r.ICMPv6Sent)
	}
}
