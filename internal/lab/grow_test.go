package lab

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/aftr"
	"github.com/lw4o6/lw4o6/b4"
	"github.com/lw4o6/lw4o6/stack/packet"
)

// poolSink is an Internet address nothing answers for: the flows' packets
// die there (counted as the Internet network's NoRoute), so 10 000 flows
// cost no replies.
var poolSink = netip.MustParseAddr("203.0.113.200")

// poolRun is one run of TestPoolFollowsDemand: what a LAN host opening
// flows concurrent UDP flows behind 2048-port sets got with the AFTR
// capping sets per B4 at maxSets.
type poolRun struct {
	maxSets, flows int
	sets, ports    int
	drops          uint64 // NAT PortsExhausted at the B4
	dropsBefore    uint64 // ... while the flows fitted in maxSets sets
	refusedAFTR    uint64 // pcp-refused-set-limit at the AFTR
	setsAfterIdle  int
}

// docs/port-sets.md, issue 8 item 4: one LAN host opens 10 000 concurrent
// UDP flows behind a 2048-port set. The B4 asks for a second set (and more)
// as the NAT fills, instead of dropping flows; at the AFTR's cap the next
// request is refused (USER_EX_QUOTA, counted at the AFTR) and the flows
// past the ports held are counted drops (PortsExhausted) at the B4; when the
// flows idle out the added sets are given back, at both ends.
//
// The flows are raw UDP packets injected into the B4's FromLAN path (a
// gVisor host would spend its time in 10 000 sockets); they go through the
// NAT, the softwire and the AFTR's upstream check to the Internet side.
func TestPoolFollowsDemand(t *testing.T) {
	if testing.Short() {
		t.Skip("10 000 flows per run")
	}
	var runs []poolRun
	for _, max := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("max-sets-%d", max), func(t *testing.T) {
			runs = append(runs, poolDemand(t, max, 10000))
		})
	}
	t.Logf("flows vs sets vs drops (2048-port sets, B4 --grow-at 0.8):")
	t.Logf("| AFTR --max-sets-per-b4 | flows | sets held | ports | drops (PortsExhausted) | drops while flows ≤ ports | refusals at AFTR | sets after idle |")
	for _, r := range runs {
		t.Logf("| %d | %d | %d | %d | %d | %d | %d | %d |", r.maxSets, r.flows, r.sets, r.ports, r.drops, r.dropsBefore, r.refusedAFTR, r.setsAfterIdle)
	}
}

func poolDemand(t *testing.T, maxSets, flows int) poolRun {
	const setSize = 2048
	var shift atomic.Int64 // the B4's clock runs ahead by this, so flows idle out at once
	w := newWorld(t, Config{
		B4s: 1, PortsPerB4: setSize,
		AFTR: func(c *aftr.Config) { c.MaxSetsPerB4 = maxSets },
		B4: func(_ int, c *b4.Config) {
			c.Now = func() time.Time { return time.Now().Add(time.Duration(shift.Load())) }
			c.MaxSets, c.GrowAt, c.ShrinkAfter = 8, 0.8, 2*time.Second
			c.NAT.HostPortShare = 0 // one LAN host fills the pool here
		},
	})
	n := w.Nodes[0]
	ctx := testCtx(t)
	pkts := func(name string) uint64 { return n.B4.Status().Counters[name+"-packets"] }
	wait := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s; status %+v", what, n.B4.Status().Sets)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	src := LANHostAddr(0).As4()
	sent := 0
	run := poolRun{maxSets: maxSets, flows: flows}
	for sent < flows {
		for range min(200, flows-sent) {
			n.B4.FromLAN(packet.AppendUDP4(nil, 0, src, poolSink.As4(), uint16(10000+sent), 9, 64, []byte("flow")))
			sent++
		}
		// Pace: every translated packet has crossed the AFTR.
		wait("the flows to cross the AFTR", func() bool {
			return w.Internet.NoRoute.Load() >= n.B4.Status().NAT.TranslatedOut
		})
		// Let the pool react before more flows come: a set more, or a
		// refusal, once the high-water mark is passed (after a refusal
		// the B4 waits out its lifetime, RFC 6887 §8.1).
		st := n.B4.Status()
		if float64(st.NAT.PortsUsed) >= 0.8*float64(st.NAT.Ports) && pkts("pool-refused") == 0 {
			sets, refused := len(st.Sets), pkts("pool-refused")
			wait("the pool to grow or be refused", func() bool {
				s := n.B4.Status()
				return len(s.Sets) > sets || pkts("pool-refused") > refused
			})
		}
		if sent <= maxSets*setSize {
			run.dropsBefore = n.B4.Status().NAT.DropOut.PortsExhausted
		}
	}
	st := n.B4.Status()
	run.sets, run.ports, run.drops = len(st.Sets), st.NAT.Ports, st.NAT.DropOut.PortsExhausted
	run.refusedAFTR = w.AFTR.Counters()["pcp-refused-set-limit-packets"]

	if run.sets != maxSets || run.ports != maxSets*setSize {
		t.Errorf("%d sets, %d ports; want the AFTR's cap of %d sets", run.sets, run.ports, maxSets)
	}
	if want := uint64(flows - maxSets*setSize); run.drops != want {
		t.Errorf("%d flows dropped, want %d: the flows past %d ports", run.drops, want, maxSets*setSize)
	}
	if run.dropsBefore != 0 {
		t.Errorf("%d flows dropped while they fitted in %d sets: the pool grew too late", run.dropsBefore, maxSets)
	}
	if run.refusedAFTR == 0 || pkts("pool-refused") == 0 {
		t.Errorf("refusals: AFTR %d, B4 %d; want the set past the cap refused and counted", run.refusedAFTR, pkts("pool-refused"))
	}
	if b := w.AFTR.Bindings(); len(b) != maxSets {
		t.Errorf("AFTR holds %d bindings, want %d", len(b), maxSets)
	}
	for _, s := range st.Sets {
		if s.IPv4 != st.PublicIPv4 || s.Used != setSize {
			t.Errorf("set %d: %v %v used %d; want %v, full", s.Number, s.IPv4, s.Ports, s.Used, st.PublicIPv4)
		}
	}

	// The flows idle out (UDP: 5 min, RFC 4787 REQ-5): the added sets go
	// back, at the B4 and at the AFTR.
	shift.Add(int64(6 * time.Minute))
	wait("the added sets given back", func() bool { return len(n.B4.Status().Sets) == 1 && len(w.AFTR.Bindings()) == 1 })
	run.setsAfterIdle = len(n.B4.Status().Sets)
	if got, want := pkts("pool-shrink"), uint64(maxSets-1); got != want {
		t.Errorf("pool-shrink %d, want %d", got, want)
	}
	if st := n.B4.Status(); st.NAT.Ports != setSize || !st.Provisioned {
		t.Errorf("after idle: provisioned %v, %d ports", st.Provisioned, st.NAT.Ports)
	}
	return run
}
