//go:build soak

package lab

// The soak test (issue 11, "Soak"): hundreds of B4s for a bounded time,
// coming and going, renumbered, through AFTR restarts with and without the
// journal, with UDP probes from every B4 and TCP connections opened and
// closed by a few gVisor LAN hosts. It checks that traffic recovers after
// every disturbance, that the AFTR's table and the B4s agree at the quiet
// points between them (no B4's set overlapping another's, no binding left
// behind by a B4 that is gone), and that once everything is closed the
// goroutines, the heap and gVisor's reference-counted objects are back to
// where they were. Not part of `make test`:
//
//	make soak SOAK_TIME=3m SOAK_B4S=200
//
// runs it (go test -tags soak -run '^TestSoak$' ./internal/lab). The
// figures it logs are in BENCHMARKS.md, "Soak".

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/refs"

	"github.com/lw4o6/lw4o6/aftr"
	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/b4"
	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
	"github.com/lw4o6/lw4o6/stack/portset"
)

var (
	soakTime = flag.Duration("soak.time", 3*time.Minute, "soak: how long the disturbances go on (setup and teardown come on top)")
	soakB4s  = flag.Int("soak.b4s", 200, "soak: B4s running at once")
	soakLog  = flag.String("soak.log", "", "soak: write the lab's log (info and above) to this file")
	soakProf = flag.String("soak.heapprofile", "", "soak: write the heap profiles and goroutines of the first and the last quiet point to this directory (go tool pprof -base first last)")
)

// The soak's shape. Every hostEvery-th B4 has a gVisor LAN host opening
// and closing TCP connections; the others are bare (UDP probes only).
const (
	hostEvery     = 40
	probeInterval = 250 * time.Millisecond // per B4
	churnPerRound = 20                     // B4s removed and as many started per churn
	renumberCount = 10                     // bindings removed per renumbering
	downtime      = time.Second            // between an AFTR's stop and its successor's start
	recoverWithin = 2 * time.Minute        // bound on every recovery: above the B4's longest back-off (64 s +50 %)
	slowRecovery  = 8 * time.Second        // a recovery this slow is reported with what it waited for
	lossGap       = 31 * time.Second       // between two restarts that lose every binding: the B4's back-off window is 30 s
	agreeWithin   = 15 * time.Second       // bound on the table and statuses agreeing
	settleTime    = time.Second            // steady traffic between disturbances
	soakLifetime  = 120 * time.Second      // B4 binding lifetime: renewals happen during the soak
	soakPool      = "192.0.2.0/28"         // 16 addresses x 31 sets of 2048: sets get reused
	soakPorts     = 2048
	flowPause     = 400 * time.Millisecond // between two TCP connections of a host
)

// Leak bounds. After close: goroutines back to the baseline within
// goroutineSlack (the runtime's and the test framework's own come and go),
// the heap after GC within heapSlack of it. At the last quiet point against
// the first (the same number of B4s running, the same mix): goroutines
// within goroutineGrowth, the heap within heapGrowth (ratio) plus
// quietHeapSlack — growth there is what churn left behind; a B4 is ~180
// KiB and ~6 goroutines (BENCHMARKS.md, "Failover"), so keeping every
// churned B4, or one goroutine of each, fails.
const (
	goroutineSlack  = 5
	goroutineGrowth = 40
	// announceSettle outlasts the 0-5 s wait before an ANNOUNCE's renewal.
	announceSettle = 6 * time.Second
	heapSlack      = 16 << 20
	heapGrowth     = 1.15
	quietHeapSlack = 8 << 20
	teardownWithin = 60 * time.Second
)

// gVisor's leak checker records every reference-counted object (packet
// buffers, TCP segments, buffer chunks, address states) from its creation,
// so it must be on before the first one exists: here, before any test.
func TestMain(m *testing.M) {
	refs.SetLeakMode(refs.LeaksPanic)
	os.Exit(m.Run())
}

type disturbance string

const (
	dChurn          disturbance = "churn"
	dRenumber       disturbance = "renumber"
	dRestartJournal disturbance = "restart-journal" // from the journal
	dRestartLost    disturbance = "restart-lost"    // the journal lost: a fresh state directory
	dRestartNone    disturbance = "restart-none"    // no journal at all
)

// schedule is the disturbances' order, repeated until soak.time is spent:
// an AFTR restart every third, so that each AFTR has run a while (its
// Epoch then tells a restart apart, RFC 6887 §8.5). The two restarts that
// lose every binding take turns in their slots, at most one per lossGap
// (a churn or a renumbering in its place otherwise), and one from the
// journal only follows an AFTR that kept one.
var schedule = []disturbance{dChurn, dRenumber, dRestartJournal, dChurn, dRenumber, dRestartNone, dChurn, dRenumber, dRestartLost}

// quiet is what a quiet point measured.
type quiet struct {
	goroutines int
	heap       uint64
}

type soak struct {
	t    *testing.T
	w    *World
	base time.Time
	ctx  context.Context

	// echoed[i]: the send time (from base) of the latest echoed probe of
	// B4 i; tcpOK[i]: the dial time of the latest TCP connection of B4
	// i's host that completed its exchange and closed.
	echoed []atomic.Int64
	tcpOK  []atomic.Int64

	mu   sync.Mutex
	live []*Node // the generator's copy of w.Nodes

	hosted map[int]bool      // B4 index -> has a LAN host (main goroutine)
	flows  map[int]*soakFlow // running TCP loops by B4 index (main goroutine)
	dir    string            // the journal's parent

	started, stopped                    int
	probesSent, probesEchoed            atomic.Uint64
	tcpOpened, tcpClosedOK, tcpFailed   atomic.Uint64
	lanPCPOK, lanPCPFailed              atomic.Uint64
	renumbered, reprovisioned, moved    int
	journalRestarts, sameSet, sameSetOf int
	recoveries, udpRecoveries           map[disturbance][]time.Duration
	quiets                              []quiet
	slow                                []string // recoveries past slowRecovery: what they waited for
}

// The soak's agreement check finds what it looks for: a binding the AFTR
// lost that the B4 still holds, a B4 the AFTR holds that is not running.
func TestSoakChecks(t *testing.T) {
	w := newWorld(t, Config{B4s: 3, PortsPerB4: 4096, Bare: func(int) bool { return true }})
	s := &soak{t: t, w: w}
	if err := pollUntil(testCtx(t), 15*time.Second, func() bool { return s.disagreement() == "" }); err != nil {
		t.Fatalf("provisioned: %s", s.disagreement())
	}
	nodes := w.Nodes
	w.Nodes = nodes[1:]
	if d := s.disagreement(); !strings.Contains(d, "not running") || !strings.Contains(d, nodes[0].Addr.String()) {
		t.Errorf("a B4 left out of the running ones: %q", d)
	}
	w.Nodes = nodes
	// Idle B4s (no traffic): the B4 does not notice.
	if !w.AFTR.RemoveBinding(nodes[1].Addr) {
		t.Fatal("no binding to remove")
	}
	if d := s.disagreement(); !strings.Contains(d, "holds 1 sets, the AFTR 0") || !strings.Contains(d, nodes[1].Addr.String()) {
		t.Errorf("a binding removed at the AFTR only: %q", d)
	}
}

func TestSoak(t *testing.T) {
	if *soakB4s < hostEvery || *soakB4s > MaxB4s {
		t.Fatalf("soak.b4s %d: want %d to %d", *soakB4s, hostEvery, MaxB4s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *soakTime+10*time.Minute)
	defer cancel()
	s := &soak{
		t: t, ctx: ctx, base: time.Now(),
		echoed: make([]atomic.Int64, maxIndex+1), tcpOK: make([]atomic.Int64, maxIndex+1),
		hosted: map[int]bool{}, flows: map[int]*soakFlow{}, dir: t.TempDir(),
		recoveries: map[disturbance][]time.Duration{}, udpRecoveries: map[disturbance][]time.Duration{},
	}
	for i := 0; i < *soakB4s; i++ {
		s.hosted[i] = i%hostEvery == 0
	}
	journal := s.newJournalDir()

	// The baseline: nothing of the lab exists yet.
	g0, h0 := s.measure()

	log := slog.New(slog.DiscardHandler)
	if *soakLog != "" {
		f, err := os.Create(*soakLog)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		log = slog.New(slog.NewTextHandler(f, nil))
	}
	w, err := New(Config{
		Logger: log,
		B4s:    *soakB4s, Pool: netip.MustParsePrefix(soakPool), PortsPerB4: soakPorts,
		AFTR: func(ac *aftr.Config) { applyFailover(FailoverBoth, journal, ac, nil) },
		B4: func(_ int, bc *b4.Config) {
			applyFailover(FailoverBoth, journal, nil, bc)
			bc.Lifetime = soakLifetime
		},
		Bare:    func(i int) bool { return !s.hosted[i] },
		LANRecv: s.lanRecv,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.w = w
	closed := false
	defer func() {
		if !closed {
			w.Close()
		}
	}()
	s.started = *soakB4s
	setup, cancelSetup := context.WithTimeout(ctx, 2*time.Minute)
	err = w.WaitProvisioned(setup)
	cancelSetup()
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.live = slices.Clone(w.Nodes)
	s.mu.Unlock()
	genCtx, stopGen := context.WithCancel(ctx)
	var gen sync.WaitGroup
	gen.Add(1)
	go func() { defer gen.Done(); s.generate(genCtx) }()
	defer func() {
		stopGen()
		gen.Wait()
		for _, f := range s.flows { // a failed run: cut them off
			f.stop()
			<-f.done
		}
	}()
	for _, n := range w.Nodes {
		if n.Host != nil {
			s.startFlow(n)
		}
	}
	// Everything flows before the first disturbance.
	s.waitRecovered("start", s.base)
	s.quiet()

	end := time.Now().Add(*soakTime)
	var lastLoss time.Time
	losses := 0
	for k := 0; time.Now().Before(end); k++ {
		d := schedule[k%len(schedule)]
		if d == dRestartNone || d == dRestartLost {
			// The two kinds in turn, whichever slot comes free.
			d = []disturbance{dRestartNone, dRestartLost}[losses%2]
		}
		switch {
		case (d == dRestartNone || d == dRestartLost) && time.Since(lastLoss) < lossGap,
			d == dRestartJournal && w.aftrCfg.StateDir == "":
			// A restart that loses every binding, not again within the
			// B4s' back-off window (each would back them off further:
			// b4/provision.go, lost; BENCHMARKS.md "Soak"); one from
			// the journal, only after an AFTR that kept one.
			d = []disturbance{dChurn, dRenumber}[k%2]
		case d == dRestartNone || d == dRestartLost:
			lastLoss = time.Now()
			losses++
		}
		t0, after := s.disturb(d)
		udp, all := s.waitRecovered(string(d), t0)
		s.udpRecoveries[d] = append(s.udpRecoveries[d], udp)
		s.recoveries[d] = append(s.recoveries[d], all)
		after()
		s.quiet()
		if err := sleep(ctx, settleTime); err != nil {
			t.Fatal(err)
		}
	}
	// A last quiet point once the transients of the last disturbance are
	// over: a B4 that an ANNOUNCE reached waits a random 0-5 s before it
	// renews (RFC 6887 §14.1.3), a goroutine per B4 while it waits, so a
	// quiet point right after a state-losing restart can count up to one
	// per B4 that is gone a few seconds later (seen once in CI: +101).
	// The growth check compares the first quiet point with this one.
	if err := sleep(ctx, announceSettle); err != nil {
		t.Fatal(err)
	}
	s.quiet()

	// Teardown: every B4 removed one by one (each delete reaches the
	// AFTR, whose table is then empty), the traffic stopped, the lab
	// closed.
	stopGen()
	gen.Wait()
	for i, f := range s.flows {
		f.close()
		delete(s.flows, i)
	}
	if err := pollUntil(ctx, 15*time.Second, func() bool { return w.Server.OpenConns() == 0 }); err != nil {
		t.Errorf("every flow closed, the Internet host holds %d TCP connections: %v", w.Server.OpenConns(), err)
	}
	for _, n := range slices.Clone(w.Nodes) {
		s.remove(n)
	}
	if b := w.AFTR.Bindings(); len(b) != 0 {
		t.Errorf("every B4 removed, the AFTR still holds %d bindings, first %v", len(b), b[0])
	}
	if got := w.Access.Ports(); got != 1 {
		t.Errorf("every B4 removed, %d ports on the access network (want the AFTR's only)", got)
	}
	w.Close()
	closed = true
	g1, h1 := s.teardown(g0)
	leak := gvisorLeaks()
	s.report(g0, h0, g1, h1, leak)

	if g1 > g0+goroutineSlack {
		t.Errorf("goroutines after close: %d, baseline %d (leftover stacks above)", g1, g0)
	}
	if float64(h1) > float64(h0)+heapSlack {
		t.Errorf("heap after close: %s, baseline %s", mib(h1), mib(h0))
	}
	if leak != "" {
		t.Errorf("gVisor reference leaks:\n%s", leak)
	}
	if s.lanPCPOK.Load() == 0 {
		t.Error("no LAN PCP mapping was ever made and deleted")
	}
	if q := s.quiets; len(q) >= 2 {
		first, last := q[0], q[len(q)-1]
		if last.goroutines > first.goroutines+goroutineGrowth {
			t.Errorf("goroutines at the quiet points grew from %d to %d with the same B4s running", first.goroutines, last.goroutines)
		}
		if float64(last.heap) > float64(first.heap)*heapGrowth+quietHeapSlack {
			t.Errorf("heap at the quiet points grew from %s to %s with the same B4s running", mib(first.heap), mib(last.heap))
		}
	}
}

// pollUntil polls cond every 50 ms for up to d.
func pollUntil(ctx context.Context, d time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for !cond() {
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// newJournalDir is a fresh, empty state directory.
func (s *soak) newJournalDir() string {
	d, err := os.MkdirTemp(s.dir, "journal-")
	if err != nil {
		s.t.Fatal(err)
	}
	return d
}

func (s *soak) since() int64 { return int64(time.Since(s.base)) }

// disturb applies d and returns when it took effect, and what to check
// once traffic has recovered.
func (s *soak) disturb(d disturbance) (time.Time, func()) {
	w := s.w
	switch d {
	case dChurn:
		nodes := s.pick(churnPerRound)
		var hosts []bool
		for _, n := range nodes {
			hosts = append(hosts, n.Host != nil)
			s.remove(n)
			if hasBinding(w, n) {
				s.t.Fatalf("B4 %v removed (its Run ended), the AFTR still holds its binding", n.Addr)
			}
		}
		// As many new ones, at new addresses, hosted as the removed were:
		// the same mix runs throughout.
		for _, h := range hosts {
			s.hosted[w.next] = h
			n, err := w.AddB4()
			if err != nil {
				s.t.Fatal(err)
			}
			s.started++
			s.mu.Lock()
			s.live = append(s.live, n)
			s.mu.Unlock()
			if h {
				s.startFlow(n)
			}
		}
		return time.Now(), func() {}

	case dRenumber:
		nodes := s.pick(renumberCount)
		before := make([]b4.Status, len(nodes))
		for i, n := range nodes {
			before[i] = n.B4.Status()
			if !w.AFTR.RemoveBinding(n.Addr) {
				s.t.Fatalf("renumbering %v: the AFTR held no binding for it", n.Addr)
			}
		}
		s.renumbered += len(nodes)
		return time.Now(), func() {
			got := 0
			for i, n := range nodes {
				st := n.B4.Status()
				if st.Provisionings > before[i].Provisionings {
					got++
				}
				if st.PublicIPv4 != before[i].PublicIPv4 || st.Ports != before[i].Ports {
					s.moved++
				}
			}
			s.reprovisioned += got
			// Each lost its binding and sends every probeInterval: each
			// draws a 1/5 and provisions again, bar one whose renewal
			// happened to come first (then it is bound afresh without
			// noticing). Not one re-provisioned: the path is broken.
			if got == 0 {
				s.t.Fatalf("%d bindings removed, no B4 provisioned again", len(nodes))
			}
		}

	default: // the AFTR restarts
		before := make(map[netip.Addr]b4.Status, len(w.Nodes))
		for _, n := range w.Nodes {
			before[n.Addr] = n.B4.Status()
		}
		w.StopAFTR()
		if err := sleep(s.ctx, downtime); err != nil {
			s.t.Fatal(err)
		}
		journal := d == dRestartJournal
		switch d {
		case dRestartLost:
			w.aftrCfg.StateDir = s.newJournalDir()
		case dRestartNone:
			w.aftrCfg.StateDir = ""
		}
		if err := w.StartAFTR(); err != nil {
			s.t.Fatal(err)
		}
		t0 := time.Now()
		if journal && !w.AFTR.Restored() {
			s.t.Fatal("restarted from its journal, the AFTR restored nothing")
		}
		return t0, func() {
			if !journal {
				return
			}
			// From the journal, the B4s keep their sets.
			s.journalRestarts++
			for _, n := range w.Nodes {
				st, b := n.B4.Status(), before[n.Addr]
				s.sameSetOf++
				if st.PublicIPv4 == b.PublicIPv4 && st.Ports == b.Ports {
					s.sameSet++
				}
			}
		}
	}
}

// pick returns k distinct running B4s chosen at random.
func (s *soak) pick(k int) []*Node {
	nodes := slices.Clone(s.w.Nodes)
	rand.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	return nodes[:min(k, len(nodes))]
}

// remove stops n's TCP loop and the B4 itself.
func (s *soak) remove(n *Node) {
	if f := s.flows[n.Index]; f != nil {
		f.close()
		delete(s.flows, n.Index)
		// The last connection's FIN on its way to the server before the
		// B4 goes (the server would otherwise hold its end for ever, as a
		// real one does when a client vanishes).
		if err := sleep(s.ctx, 100*time.Millisecond); err != nil {
			s.t.Fatal(err)
		}
	}
	s.mu.Lock()
	s.live = slices.DeleteFunc(s.live, func(m *Node) bool { return m == n })
	s.mu.Unlock()
	if err := s.w.RemoveB4(n); err != nil {
		s.t.Fatal(err)
	}
	delete(s.hosted, n.Index)
	s.stopped++
}

// waitRecovered waits until traffic flows again everywhere after t0 — every
// running B4 has had a probe sent after t0 echoed, every LAN host has
// completed a TCP connection dialled after t0 — and the AFTR's table and
// the B4s agree. It returns how long after t0 the probes were all back
// (udp) and everything was (all), at 50 ms resolution on top of the probe
// interval and of the TCP loop's pace: a connection caught by the
// disturbance holds its host's loop until it ends or times out (5 s).
func (s *soak) waitRecovered(what string, t0 time.Time) (udp, all time.Duration) {
	off := int64(t0.Sub(s.base))
	deadline := t0.Add(recoverWithin)
	udp = -1
	slow := false
	for {
		waiting := ""
		var late *Node
		for _, n := range s.w.Nodes {
			if s.echoed[n.Index].Load() < off {
				waiting = fmt.Sprintf("probes of B4 %v (%s)", n.Addr, setString(n.B4.Status()))
				late = n
				break
			}
		}
		if waiting == "" && udp < 0 {
			udp = time.Since(t0)
		}
		for _, n := range s.w.Nodes {
			if waiting == "" && n.Host != nil && s.tcpOK[n.Index].Load() < off {
				waiting = fmt.Sprintf("TCP from B4 %v's host (%s; last error %v)", n.Addr, setString(n.B4.Status()), s.flows[n.Index].error())
			}
		}
		if waiting == "" {
			waiting = s.disagreement()
		}
		if waiting == "" {
			return udp, time.Since(t0)
		}
		if !slow && time.Since(t0) > slowRecovery {
			slow = true
			l := fmt.Sprintf("%s at %v: still waiting %v after for %s", what, t0.Sub(s.base).Round(time.Second), slowRecovery, waiting)
			if late != nil {
				st := late.B4.Status()
				var cs []string
				for k, v := range st.Counters {
					if strings.Contains(k, "icmpv6") || strings.Contains(k, "reprovision") || strings.Contains(k, "announce") || strings.Contains(k, "pcp") {
						cs = append(cs, fmt.Sprintf("%s=%d", k, v))
					}
				}
				slices.Sort(cs)
				l += fmt.Sprintf(", provisionings %d, %s", st.Provisionings, strings.Join(cs, " "))
			}
			s.slow = append(s.slow, l)
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: not recovered %v after: %s", what, recoverWithin, waiting)
		}
		if err := sleep(s.ctx, 50*time.Millisecond); err != nil {
			s.t.Fatalf("%s: %v waiting for %s", what, err, waiting)
		}
	}
}

// quiet checks, at a quiet point, that the table and the statuses agree
// (for agreeWithin: a renewal may be in flight), and measures.
func (s *soak) quiet() {
	deadline := time.Now().Add(agreeWithin)
	for {
		d := s.disagreement()
		if d == "" {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("quiet point %d: %s", len(s.quiets), d)
		}
		if err := sleep(s.ctx, 100*time.Millisecond); err != nil {
			s.t.Fatal(err)
		}
	}
	g, h := s.measure()
	s.quiets = append(s.quiets, quiet{goroutines: g, heap: h})
	if *soakProf != "" {
		// Each overwrites the last: "last" is the last quiet point's.
		name := "heap-last.pprof"
		if len(s.quiets) == 1 {
			name = "heap-first.pprof"
		}
		f, err := os.Create(filepath.Join(*soakProf, name))
		if err != nil {
			s.t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.WriteHeapProfile(f); err != nil {
			s.t.Fatal(err)
		}
		g, err := os.Create(filepath.Join(*soakProf, strings.Replace(name, "heap", "goroutines", 1)+".txt"))
		if err != nil {
			s.t.Fatal(err)
		}
		defer g.Close()
		pprof.Lookup("goroutine").WriteTo(g, 1)
	}
}

// disagreement says how the AFTR's table and the running B4s disagree:
// a B4 unprovisioned, a B4's sets not exactly its bindings, a binding of
// a B4 that is not running, two B4s' sets overlapping. "" when they agree.
func (s *soak) disagreement() string {
	w := s.w
	if w.AFTR == nil {
		return "no AFTR"
	}
	table := map[netip.Addr][]bindings.Binding{}
	for _, b := range w.AFTR.Bindings() {
		table[b.B4] = append(table[b.B4], b)
	}
	type held struct {
		b4  netip.Addr
		set portset.Range
	}
	byIPv4 := map[netip.Addr][]held{}
	for _, n := range w.Nodes {
		st := n.B4.Status()
		if !st.Provisioned {
			return fmt.Sprintf("B4 %v unprovisioned", n.Addr)
		}
		bs := table[n.Addr]
		delete(table, n.Addr)
		if len(bs) != len(st.Sets) {
			return fmt.Sprintf("B4 %v holds %d sets, the AFTR %d bindings for it", n.Addr, len(st.Sets), len(bs))
		}
		for _, set := range st.Sets {
			if !slices.ContainsFunc(bs, func(b bindings.Binding) bool {
				r, ok := b.PSID.Contiguous()
				return ok && b.IPv4 == set.IPv4 && r == set.Ports
			}) {
				return fmt.Sprintf("B4 %v holds %v %v, the AFTR's bindings for it are %v", n.Addr, set.IPv4, set.Ports, bs)
			}
			byIPv4[set.IPv4] = append(byIPv4[set.IPv4], held{n.Addr, set.Ports})
		}
	}
	if len(table) > 0 {
		for addr, bs := range table {
			return fmt.Sprintf("the AFTR holds %d bindings of B4s not running, %v for %v", len(table), bs, addr)
		}
	}
	for ip, hs := range byIPv4 {
		slices.SortFunc(hs, func(a, b held) int { return int(a.set.First) - int(b.set.First) })
		for i := 1; i < len(hs); i++ {
			if hs[i-1].set.Overlaps(hs[i].set) {
				return fmt.Sprintf("overlapping sets on %v: %v holds %v, %v holds %v", ip, hs[i-1].b4, hs[i-1].set, hs[i].b4, hs[i].set)
			}
		}
	}
	return ""
}

// lanRecv takes what a B4 sends to its LAN: the echo of one of its probes
// moves echoed[i] on.
func (s *soak) lanRecv(i int, pkt []byte) {
	ip, err := packet.ParseIPv4(pkt)
	var u packet.UDP
	if err != nil || packet.ParseUDP4(ip, &u) != nil || ip.SrcAddr() != EchoAddr ||
		u.SrcPort != UDPPort || u.DstPort != probeSrcPort || len(u.Data) != 12 ||
		int(binary.BigEndian.Uint32(u.Data)) != i || i >= len(s.echoed) {
		return
	}
	s.probesEchoed.Add(1)
	sent := int64(binary.BigEndian.Uint64(u.Data[4:]))
	e := &s.echoed[i]
	for {
		old := e.Load()
		if sent <= old || e.CompareAndSwap(old, sent) {
			return
		}
	}
}

// generate probes every running B4 once per probeInterval, spread over
// 10 ms ticks, until ctx is done.
func (s *soak) generate(ctx context.Context) {
	const tick = 10 * time.Millisecond
	slots := int(probeInterval / tick)
	t := time.NewTicker(tick)
	defer t.Stop()
	var data [12]byte
	for k := 0; ; k++ {
		s.mu.Lock()
		for j := k % slots; j < len(s.live); j += slots {
			n := s.live[j]
			src := LANHostAddr(n.Index)
			if !n.Bare() {
				src = LANProbeAddr(n.Index)
			}
			binary.BigEndian.PutUint32(data[:], uint32(n.Index))
			binary.BigEndian.PutUint64(data[4:], uint64(s.since()))
			n.Inject(packet.AppendUDP4(nil, 0, src.As4(), EchoAddr.As4(), probeSrcPort, UDPPort, 64, data[:]))
			s.probesSent.Add(1)
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// soakFlow is a LAN host's TCP loop: connections opened, used and closed
// one after another, alternately an echo exchange and a download.
type soakFlow struct {
	stop context.CancelFunc
	quit chan struct{} // closed: end after the current connection
	done chan struct{}
	mu   sync.Mutex
	err  error // the last failure (expected around disturbances)
}

func (s *soak) startFlow(n *Node) {
	ctx, stop := context.WithCancel(s.ctx)
	f := &soakFlow{stop: stop, quit: make(chan struct{}), done: make(chan struct{})}
	s.flows[n.Index] = f
	go func() {
		defer close(f.done)
		for k := 0; ; k++ {
			start := s.since()
			if err := s.tcpOnce(ctx, n, k%2 == 0); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.tcpFailed.Add(1)
				f.mu.Lock()
				f.err = err
				f.mu.Unlock()
			} else {
				s.tcpClosedOK.Add(1)
				e := &s.tcpOK[n.Index]
				if start > e.Load() {
					e.Store(start) // this goroutine is its only writer
				}
			}
			if k%4 == 3 {
				// Now and then an inbound mapping from the B4's LAN
				// PCP server, made and deleted.
				if err := s.lanPCPOnce(ctx, n, k); err != nil && ctx.Err() == nil {
					s.lanPCPFailed.Add(1)
				} else if err == nil {
					s.lanPCPOK.Add(1)
				}
			}
			// A few connections a second: the NAT keeps each closed
			// one's port for its transitory timeout (4 min).
			t := time.NewTimer(flowPause)
			select {
			case <-f.quit:
				t.Stop()
				return
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}()
}

// lanPCPOnce asks n's B4, from its LAN host, for a TCP mapping (RFC 6887
// MAP to the gateway's 5351) and deletes it: an explicit mapping made and
// dropped on the B4's port set while it comes and goes.
func (s *soak) lanPCPOnce(ctx context.Context, n *Node, k int) error {
	c, err := n.Host.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(LANGateway(n.Index), 5351))
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	iport := uint16(20000 + k%1000)
	ask := func(lifetime uint32) (*pcp.Message, error) {
		req, err := pcp.Marshal(&pcp.Message{Opcode: pcp.OpMap, Lifetime: lifetime, ClientIP: LANHostAddr(n.Index),
			Map: &pcp.MapData{Nonce: [12]byte{byte(k), byte(k >> 8)}, Protocol: 6, InternalPort: iport, ExternalIP: netip.IPv4Unspecified()}})
		if err != nil {
			return nil, err
		}
		buf := make([]byte, 1100)
		for range 3 { // RFC 6887 §8.1.1: retransmit
			if _, err := c.Write(req); err != nil {
				return nil, err
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			if m, err := c.Read(buf); err == nil {
				return pcp.Parse(buf[:m])
			}
		}
		return nil, fmt.Errorf("no answer from %v", LANGateway(n.Index))
	}
	m, err := ask(60)
	if err != nil {
		return err
	}
	if m.Result != pcp.Success || m.Map == nil || m.Map.ExternalPort == 0 {
		return fmt.Errorf("LAN MAP: result %v", m.Result)
	}
	m, err = ask(0)
	if err != nil {
		return err
	}
	if m.Result != pcp.Success {
		return fmt.Errorf("LAN MAP delete: result %v", m.Result)
	}
	return nil
}

// close ends the loop between two connections (each is bounded: 5 s), so
// that none is cut off with the server still holding its end, and waits.
func (f *soakFlow) close() {
	close(f.quit)
	<-f.done
	f.stop()
}

func (f *soakFlow) error() error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// tcpOnce opens one connection from n's host, uses it and closes it: an
// echo of three messages, or a 64 KiB download.
func (s *soak) tcpOnce(ctx context.Context, n *Node, echo bool) error {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	port := uint16(TCPPort)
	if echo {
		port = TCPEchoPort
	}
	c, err := n.Host.DialTCP(dctx, netip.AddrPortFrom(ServerAddr, port))
	if err != nil {
		return err
	}
	s.tcpOpened.Add(1)
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if echo {
		return echoThree(c)
	}
	const size = 64 << 10
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], size)
	if _, err := c.Write(hdr[:]); err != nil {
		return err
	}
	got, err := io.Copy(io.Discard, c)
	if err == nil && got != size {
		err = fmt.Errorf("%w: %d of %d octets", errShort, got, size)
	}
	return err
}

func echoThree(c net.Conn) error {
	var msg, got [16]byte
	for i := range 3 {
		binary.BigEndian.PutUint64(msg[:], uint64(i))
		if _, err := c.Write(msg[:]); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, got[:]); err != nil {
			return err
		}
		if msg != got {
			return fmt.Errorf("echo %x, sent %x", got, msg)
		}
	}
	return nil
}

// measure is the goroutine count and the live heap after a full GC.
func (s *soak) measure() (int, uint64) {
	runtime.GC()
	runtime.GC() // the second empties what the first left in sync.Pools
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), m.HeapAlloc
}

// teardown waits (bounded) for the goroutines to come back to the
// baseline and measures; on failure it writes the leftover stacks.
func (s *soak) teardown(g0 int) (int, uint64) {
	deadline := time.Now().Add(teardownWithin)
	for runtime.NumGoroutine() > g0+goroutineSlack && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	g, h := s.measure()
	if g > g0+goroutineSlack {
		var b strings.Builder
		pprof.Lookup("goroutine").WriteTo(&b, 1)
		s.t.Logf("leftover goroutines:\n%s", b.String())
	}
	return g, h
}

// gvisorLeaks runs gVisor's leak check: every reference-counted object
// still registered. In panic mode its report comes as the panic.
func gvisorLeaks() (leak string) {
	defer func() {
		if r := recover(); r != nil {
			leak = fmt.Sprint(r)
		}
	}()
	refs.DoRepeatedLeakCheck()
	return ""
}

func (s *soak) report(g0 int, h0 uint64, g1 int, h1 uint64, leak string) {
	t := s.t
	var all, udp []time.Duration
	var kinds []string
	for _, d := range []disturbance{dChurn, dRenumber, dRestartJournal, dRestartNone, dRestartLost} {
		r, u := s.recoveries[d], s.udpRecoveries[d]
		all, udp = append(all, r...), append(udp, u...)
		kinds = append(kinds, fmt.Sprintf("%s %d: UDP p50 %v max %v, all p50 %v max %v", d, len(r),
			percentile(u, 0.5), percentile(u, 1), percentile(r, 0.5), percentile(r, 1)))
	}
	t.Logf("soak: %v with %d B4s running (1 in %d with a gVisor LAN host), pool %s at %d ports", *soakTime, *soakB4s, hostEvery, soakPool, soakPorts)
	t.Logf("B4s started %d, stopped %d; bindings removed (renumbering) %d: %d provisioned again, %d into another set", s.started, s.stopped, s.renumbered, s.reprovisioned, s.moved)
	t.Logf("disturbances %d; recovery, UDP: every B4's probes echoed again; all: and every host's TCP, and the table and the statuses agreeing:", len(all))
	for _, k := range kinds {
		t.Logf("  %s", k)
	}
	t.Logf("  overall: UDP p50 %v max %v, all p50 %v max %v", percentile(udp, 0.5), percentile(udp, 1), percentile(all, 0.5), percentile(all, 1))
	for _, l := range s.slow {
		t.Logf("  slow: %s", l)
	}
	if s.sameSetOf > 0 {
		t.Logf("restarts from the journal %d: %d of %d B4s kept their set", s.journalRestarts, s.sameSet, s.sameSetOf)
	}
	t.Logf("UDP probes sent %d, echoed %d; TCP connections opened %d, completed and closed %d, failed %d; LAN PCP mappings made and deleted %d, failed %d",
		s.probesSent.Load(), s.probesEchoed.Load(), s.tcpOpened.Load(), s.tcpClosedOK.Load(), s.tcpFailed.Load(), s.lanPCPOK.Load(), s.lanPCPFailed.Load())
	if q := s.quiets; len(q) > 0 {
		t.Logf("quiet points %d: goroutines first %d, last %d; heap first %s, last %s", len(q), q[0].goroutines, q[len(q)-1].goroutines, mib(q[0].heap), mib(q[len(q)-1].heap))
	}
	t.Logf("goroutines: baseline %d, after close %d; heap: baseline %s, after close %s", g0, g1, mib(h0), mib(h1))
	if leak == "" {
		t.Logf("gVisor refs: leak checker on (%v), nothing leaked", refs.GetLeakMode())
	}
}

// percentile is the nearest-rank q-quantile of ds, rounded to 10 ms.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[max(int(math.Ceil(q*float64(len(s))))-1, 0)].Round(10 * time.Millisecond)
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
