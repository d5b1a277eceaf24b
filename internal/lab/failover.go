package lab

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lw4o6/lw4o6/aftr"
	"github.com/lw4o6/lw4o6/b4"
	"github.com/lw4o6/lw4o6/stack/packet"
)

// The aftr-restart scenario (issue 7 item 5): every busy B4 carries steady
// traffic, some B4s are idle, and the AFTR loses its state: it is stopped
// and a new instance started on the same addresses (with the journal, from
// it). Per B4 it measures how long after the restart traffic flows again,
// the packets lost, whether a TCP flow survived, and the AFTR's PCP request
// rate, so that the design's question — ICMPv6 1/5, ANNOUNCE, or both —
// is answered with figures.
//
// Traffic is raw: each busy B4 gets a UDP probe every Interval, injected
// into its LAN side and echoed by the raw responder at EchoAddr, so a
// thousand B4s need no gVisor LAN host each. Only the B4s that carry a TCP
// flow (at most TCPFlows) have a LAN network with a gVisor host.

// ScenarioAFTRRestart names the scenario.
const ScenarioAFTRRestart = "aftr-restart"

// probeSrcPort is the LAN-side source port of every probe.
const probeSrcPort = 40000

// FailoverConfig sets up the aftr-restart scenario. Zero durations take the
// defaults given.
type FailoverConfig struct {
	B4s int
	// Idle is the fraction of B4s with no traffic of their own (the last
	// ones). An idle B4 counts as recovered when the new AFTR holds its
	// binding and the B4 holds the same set.
	Idle float64
	// TCPFlows is how many busy B4s (the first ones) carry one long-lived
	// TCP flow from a gVisor LAN host to the Internet host's echo,
	// writing a little every Interval; the other B4s are bare.
	TCPFlows int
	Failover Failover
	// Journal restarts the AFTR from its journal, in a temporary state
	// directory removed afterwards.
	Journal    bool
	Pool       netip.Prefix
	PortsPerB4 int
	// Interval is the time between two probes of one busy B4 (100 ms):
	// the resolution of the recovery times.
	Interval time.Duration
	// Setup bounds provisioning and the first traffic (60 s).
	Setup time.Duration
	// Warmup is the steady traffic before the stop (5 s, see warmup); Downtime the
	// time between the stop and the start of the new instance (1 s);
	// RecoverWithin how long after the start a B4 may take to recover
	// before it counts as never recovered (30 s); Hold the traffic kept
	// after the last recovery, whose losses count too (1 s).
	Warmup, Downtime, RecoverWithin, Hold time.Duration
	// ICMPRate, when > 0, is the AFTR's ICMP error rate limit per second
	// (aftr.Config.ICMPRate): in ICMP mode it paces how fast busy B4s
	// learn of the lost state. 0 keeps the AFTR's default.
	ICMPRate int
	// PcapDir, if set, receives access.pcap and internet.pcap.
	PcapDir string
	Logger  *slog.Logger
}

// warmup is the default steady traffic before the stop. It also makes the
// old AFTR's uptime, and so its PCP Epoch, large enough for a B4 to tell a
// restart from it: RFC 6887 §8.5 tolerates an Epoch that steps back by a
// second or two, so an AFTR restarted within ~2 s of its own start (or of
// the last response a B4 saw from it) is indistinguishable from the same
// AFTR, and an ANNOUNCE from it moves no B4.
const warmup = 5 * time.Second

func (c *FailoverConfig) defaults() {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.Interval, 100 * time.Millisecond}, {&c.Setup, 60 * time.Second}, {&c.Warmup, warmup},
		{&c.Downtime, time.Second}, {&c.RecoverWithin, 30 * time.Second}, {&c.Hold, time.Second}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.PortsPerB4 == 0 {
		c.PortsPerB4 = aftr.DefaultConfig().PortsPerB4
	}
}

func (c *FailoverConfig) validate() error {
	switch {
	case c.B4s < 1 || c.B4s > MaxB4s:
		return fmt.Errorf("lab: %d B4s: want 1 to %d", c.B4s, MaxB4s)
	case math.IsNaN(c.Idle) || c.Idle < 0 || c.Idle > 1:
		return fmt.Errorf("lab: idle fraction %v: want 0 to 1", c.Idle)
	case c.TCPFlows < 0:
		return fmt.Errorf("lab: %d TCP flows", c.TCPFlows)
	case c.ICMPRate < 0:
		return fmt.Errorf("lab: ICMP rate %d", c.ICMPRate)
	case c.Interval < time.Millisecond || c.Warmup < 0 || c.Downtime < 0 || c.RecoverWithin <= 0 || c.Hold < 0 || c.Setup <= 0:
		return errors.New("lab: scenario durations must be positive (interval at least 1ms)")
	}
	return CheckPool(c.Pool, c.PortsPerB4, c.B4s)
}

// FailoverReport is what the scenario measured. Times are milliseconds
// from the start of the new AFTR instance ("the restart").
type FailoverReport struct {
	Scenario   string   `json:"scenario"`
	Failover   Failover `json:"failover"`
	Journal    bool     `json:"journal"`
	Restored   bool     `json:"restored"` // the new AFTR said it restored its state
	B4s        int      `json:"b4s"`
	Busy       int      `json:"busy"`
	Idle       int      `json:"idle"`
	Pool       string   `json:"pool"`
	PortsPerB4 int      `json:"ports_per_b4"`
	IntervalMS float64  `json:"interval_ms"`
	ICMPRate   int      `json:"icmp_rate"` // the AFTR's ICMP errors per second
	DowntimeMS float64  `json:"downtime_ms"`
	// RecoverWithinMS is the deadline after the restart.
	RecoverWithinMS float64 `json:"recover_within_ms"`
	ProvisionMS     float64 `json:"provision_ms"` // all B4s provisioned at the start

	// BusyRecovery: time to the first echo of a probe sent after the
	// restart. IdleRecovery: time until the new AFTR holds the idle B4's
	// binding and the B4 holds the same set.
	BusyRecovery Recovery `json:"busy_recovery"`
	IdleRecovery Recovery `json:"idle_recovery"`

	// Probes of the busy B4s: sent, unanswered in all (the AFTR's
	// downtime included), unanswered of those sent after the restart.
	Sent             uint64 `json:"sent"`
	Lost             uint64 `json:"lost"`
	LostAfterRestart uint64 `json:"lost_after_restart"`

	TCPFlows    int `json:"tcp_flows"`
	TCPSurvived int `json:"tcp_survived"`

	// PCP requests reaching the new AFTR: all, and the most in one 100 ms
	// window (and when that window began).
	PCPRequests     uint64  `json:"pcp_requests"`
	PCPPeakPer100ms uint64  `json:"pcp_peak_per_100ms"`
	PCPPeakAtMS     float64 `json:"pcp_peak_at_ms"`
	// SameSet counts the recovered B4s holding the same address and
	// ports as before the restart.
	SameSet int `json:"same_set"`
	// ICMPv6Sent are the ICMPv6 errors (here: 1/5) the new AFTR sent,
	// ICMPv6RateLimited those its rate limit (aftr.Config.ICMPRate) held back.
	ICMPv6Sent        uint64 `json:"icmpv6_sent"`
	ICMPv6RateLimited uint64 `json:"icmpv6_rate_limited"`

	// Memory once every B4 is provisioned, before traffic: Go heap and
	// goroutine stacks in use, all and per B4.
	MemoryBytes      uint64 `json:"memory_bytes"`
	MemoryPerB4Bytes uint64 `json:"memory_per_b4_bytes"`
	Goroutines       int    `json:"goroutines"`

	OK    bool        `json:"ok"` // every B4 recovered within the deadline
	PerB4 []B4Outcome `json:"per_b4"`
}

// Recovery summarises recovery times over B4s of one kind: how many
// recovered of how many, and percentiles (nearest rank) over those that did.
type Recovery struct {
	Of        int     `json:"of"`
	Recovered int     `json:"recovered"`
	P50MS     float64 `json:"p50_ms"`
	P99MS     float64 `json:"p99_ms"`
	MaxMS     float64 `json:"max_ms"`
}

// B4Outcome is one B4's part of the report. -1 means never.
type B4Outcome struct {
	Index      int        `json:"index"`
	Addr       netip.Addr `json:"addr"`
	Role       string     `json:"role"` // busy, busy+tcp or idle
	Recovered  bool       `json:"recovered"`
	RecoveryMS float64    `json:"recovery_ms"`
	// BindingMS: when the new AFTR held the B4's binding, the B4 the same
	// set.
	BindingMS        float64 `json:"binding_ms"`
	Sent             uint64  `json:"sent"`
	Lost             uint64  `json:"lost"`
	LostAfterRestart uint64  `json:"lost_after_restart"`
	// TCP is "survived", "stalled" (no echo since the restart) or the
	// flow's error; TCPRecoveryMS the first echo of data written after
	// the restart.
	TCP           string  `json:"tcp,omitempty"`
	TCPRecoveryMS float64 `json:"tcp_recovery_ms,omitempty"`
	Before        string  `json:"before"`
	After         string  `json:"after"`
	SameSet       bool    `json:"same_set"`
}

// probeStats are one busy B4's probe counters. Times are offsets from the
// scenario's base time.
type probeStats struct {
	sent, recv, sentAfter, recvAfter atomic.Uint64
	first                            atomic.Int64 // first echo of a probe sent after the restart; 0: none
}

// scenario is the aftr-restart run's state.
type scenario struct {
	cfg    FailoverConfig
	w      *World
	base   time.Time
	t0     atomic.Int64 // the restart, from base; MaxInt64 before
	busy   int
	hosted int
	probes []probeStats
	flows  []*tcpFlow
}

func (s *scenario) since() int64 { return int64(time.Since(s.base)) }

// RunFailover runs the aftr-restart scenario. It returns an error when the
// scenario could not be run (bad configuration, setup failed, ctx done);
// B4s that never recovered are in the report (OK false).
func RunFailover(ctx context.Context, cfg FailoverConfig) (*FailoverReport, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	journal := ""
	if cfg.Journal {
		// Checked before the directory exists: the mode may not be built.
		if err := applyFailover(cfg.Failover, "-", nil, nil); err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "lw4o6-lab-journal-")
		if err != nil {
			return nil, fmt.Errorf("lab: journal directory: %w", err)
		}
		defer os.RemoveAll(dir)
		journal = dir
	}
	if err := applyFailover(cfg.Failover, journal, nil, nil); err != nil {
		return nil, err
	}
	idle := int(math.Round(cfg.Idle * float64(cfg.B4s)))
	s := &scenario{cfg: cfg, base: time.Now(), busy: cfg.B4s - idle}
	s.hosted = min(cfg.TCPFlows, s.busy)
	s.t0.Store(math.MaxInt64)
	s.probes = make([]probeStats, cfg.B4s)

	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	w, err := New(Config{
		B4s: cfg.B4s, Pool: cfg.Pool, PortsPerB4: cfg.PortsPerB4, PcapDir: cfg.PcapDir, Logger: cfg.Logger,
		AFTR: func(ac *aftr.Config) {
			applyFailover(cfg.Failover, journal, ac, nil)
			if cfg.ICMPRate > 0 {
				ac.ICMPRate = cfg.ICMPRate
			}
		},
		B4:      func(_ int, bc *b4.Config) { applyFailover(cfg.Failover, journal, nil, bc) },
		Bare:    func(i int) bool { return i >= s.hosted },
		LANRecv: s.lanRecv,
	})
	if err != nil {
		return nil, err
	}
	defer w.Close()
	s.w = w
	setup, cancel := context.WithTimeout(ctx, cfg.Setup)
	defer cancel()
	if err := w.WaitProvisioned(setup); err != nil {
		return nil, err
	}
	r := &FailoverReport{
		Scenario: ScenarioAFTRRestart, Failover: cfg.Failover, Journal: cfg.Journal,
		B4s: cfg.B4s, Busy: s.busy, Idle: idle, Pool: cfg.Pool.String(), PortsPerB4: cfg.PortsPerB4,
		IntervalMS: ms(cfg.Interval), DowntimeMS: ms(cfg.Downtime), RecoverWithinMS: ms(cfg.RecoverWithin),
		ProvisionMS: ms(time.Since(start)), TCPFlows: s.hosted, ICMPRate: w.aftrCfg.ICMPRate,
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	if used := m1.HeapInuse + m1.StackInuse; used > m0.HeapInuse+m0.StackInuse {
		r.MemoryBytes = used - m0.HeapInuse - m0.StackInuse
		r.MemoryPerB4Bytes = r.MemoryBytes / uint64(cfg.B4s)
	}
	r.Goroutines = runtime.NumGoroutine()

	// Steady traffic: probes from every busy B4, a TCP flow from each
	// hosted one; every one must flow before the AFTR is stopped.
	genCtx, stopGen := context.WithCancel(ctx)
	var gen sync.WaitGroup
	gen.Add(1)
	go func() { defer gen.Done(); s.generate(genCtx) }()
	defer func() { stopGen(); gen.Wait() }()
	for i := 0; i < s.hosted; i++ {
		f, err := startFlow(setup, w.Nodes[i], cfg.Interval, s)
		if err != nil {
			return nil, err
		}
		s.flows = append(s.flows, f)
	}
	defer func() {
		for _, f := range s.flows {
			f.close()
		}
	}()
	if err := s.waitTraffic(setup); err != nil {
		return nil, err
	}
	if err := sleep(ctx, cfg.Warmup); err != nil {
		return nil, err
	}
	before := make([]b4.Status, cfg.B4s)
	for i, n := range w.Nodes {
		before[i] = n.B4.Status()
	}

	// The AFTR loses its state, and a new instance starts after the
	// downtime (from its journal, if any).
	w.StopAFTR()
	if err := sleep(ctx, cfg.Downtime); err != nil {
		return nil, err
	}
	t0 := time.Now()
	meter := NewRateMeter(t0, 100*time.Millisecond, cfg.RecoverWithin+cfg.Hold+5*time.Second)
	w.pcpMeter.Store(meter)
	s.t0.Store(int64(t0.Sub(s.base)))
	if err := w.StartAFTR(); err != nil {
		return nil, fmt.Errorf("lab: restarting the AFTR: %w", err)
	}
	if rs, ok := any(w.AFTR).(interface{ Restored() bool }); ok {
		r.Restored = rs.Restored()
	}
	bound := s.watch(ctx, t0, w.AFTR)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	// Traffic goes on for Hold, then the echoes in flight come back.
	if err := sleep(ctx, cfg.Hold); err != nil {
		return nil, err
	}
	stopGen()
	gen.Wait()
	if err := sleep(ctx, 500*time.Millisecond); err != nil {
		return nil, err
	}
	s.report(r, t0, before, bound, meter)
	return r, nil
}

// lanRecv takes what a B4 sends to its LAN (bare) or to LANProbeAddr
// (hosted): an echo of one of its probes counts, anything else (an ICMPv4
// "net unreachable" while unprovisioned) does not.
func (s *scenario) lanRecv(i int, pkt []byte) {
	ip, err := packet.ParseIPv4(pkt)
	var u packet.UDP
	if err != nil || packet.ParseUDP4(ip, &u) != nil || ip.SrcAddr() != EchoAddr ||
		u.SrcPort != UDPPort || u.DstPort != probeSrcPort || len(u.Data) != 12 ||
		int(binary.BigEndian.Uint32(u.Data)) != i || i >= len(s.probes) {
		return
	}
	now := s.since()
	p := &s.probes[i]
	p.recv.Add(1)
	if int64(binary.BigEndian.Uint64(u.Data[4:])) >= s.t0.Load() {
		p.recvAfter.Add(1)
		p.first.CompareAndSwap(0, now)
	}
}

// generate sends each busy B4 a probe every Interval, spread over ticks of
// at most 10 ms, until ctx is done.
func (s *scenario) generate(ctx context.Context) {
	tick := min(10*time.Millisecond, s.cfg.Interval)
	slots := max(1, int(s.cfg.Interval/tick))
	t := time.NewTicker(tick)
	defer t.Stop()
	var data [12]byte
	for k := 0; ; k++ {
		for i := k % slots; i < s.busy; i += slots {
			n := s.w.Nodes[i]
			src := LANHostAddr(i)
			if !n.Bare() {
				src = LANProbeAddr(i)
			}
			off := s.since()
			binary.BigEndian.PutUint32(data[:], uint32(i))
			binary.BigEndian.PutUint64(data[4:], uint64(off))
			pkt := packet.AppendUDP4(nil, 0, src.As4(), EchoAddr.As4(), probeSrcPort, UDPPort, 64, data[:])
			p := &s.probes[i]
			p.sent.Add(1)
			if off >= s.t0.Load() {
				p.sentAfter.Add(1)
			}
			n.Inject(pkt)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// waitTraffic waits until every busy B4's probes and every TCP flow have
// been echoed at least once.
func (s *scenario) waitTraffic(ctx context.Context) error {
	for {
		missing := -1
		for i := 0; i < s.busy && missing < 0; i++ {
			if s.probes[i].recv.Load() == 0 {
				missing = i
			}
		}
		flow := -1
		for i, f := range s.flows {
			if f.echoes.Load() == 0 && flow < 0 {
				flow = i
				if err := f.error(); err != nil {
					return fmt.Errorf("lab: TCP flow of B4 %d before the restart: %w", i, err)
				}
			}
		}
		if missing < 0 && flow < 0 {
			return nil
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			if missing >= 0 {
				return fmt.Errorf("lab: no echo to the probes of B4 %d (%v) before the restart: %w", missing, B4Addr(missing), err)
			}
			return fmt.Errorf("lab: no echo on the TCP flow of B4 %d before the restart: %w", flow, err)
		}
	}
}

// watch samples, every 50 ms from the restart until every B4 has recovered
// or RecoverWithin has passed, when each B4's binding is back: held by the
// new AFTR, the same set held by the B4. It returns those times (-1: never).
func (s *scenario) watch(ctx context.Context, t0 time.Time, a *aftr.AFTR) []time.Duration {
	n := len(s.w.Nodes)
	bound := make([]time.Duration, n)
	for i := range bound {
		bound[i] = -1
	}
	index := make(map[netip.Addr]int, n)
	for i, nd := range s.w.Nodes {
		index[nd.Addr] = i
	}
	deadline := t0.Add(s.cfg.RecoverWithin)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		now := time.Now()
		for _, b := range a.Bindings() {
			i, ok := index[b.B4]
			if !ok || bound[i] >= 0 {
				continue
			}
			st := s.w.Nodes[i].B4.Status()
			if r, ok := b.PSID.Contiguous(); ok && st.Provisioned && st.PublicIPv4 == b.IPv4 && st.Ports == r {
				bound[i] = now.Sub(t0)
			}
		}
		if s.allRecovered(bound) || now.After(deadline) {
			return bound
		}
		select {
		case <-ctx.Done():
			return bound
		case <-t.C:
		}
	}
}

func (s *scenario) allRecovered(bound []time.Duration) bool {
	for i := range s.w.Nodes {
		if i < s.busy && s.probes[i].first.Load() == 0 || i >= s.busy && bound[i] < 0 {
			return false
		}
	}
	for _, f := range s.flows {
		if f.firstAfter.Load() == 0 && f.error() == nil {
			return false // undecided: neither flowing again nor failed
		}
	}
	return true
}

func (s *scenario) report(r *FailoverReport, t0 time.Time, before []b4.Status, bound []time.Duration, meter *RateMeter) {
	t0off := t0.Sub(s.base)
	deadline := s.cfg.RecoverWithin
	var busyTimes, idleTimes []time.Duration
	r.OK = true
	for i, n := range s.w.Nodes {
		after := n.B4.Status()
		o := B4Outcome{Index: i, Addr: n.Addr, Role: "busy", RecoveryMS: -1, BindingMS: -1,
			Before: setString(before[i]), After: setString(after)}
		if bound[i] >= 0 {
			o.BindingMS = ms(bound[i])
		}
		var rec time.Duration = -1
		if i < s.busy {
			p := &s.probes[i]
			if f := p.first.Load(); f != 0 {
				rec = time.Duration(f) - t0off
			}
			o.Sent = p.sent.Load()
			o.Lost = o.Sent - min(o.Sent, p.recv.Load())
			sa := p.sentAfter.Load()
			o.LostAfterRestart = sa - min(sa, p.recvAfter.Load())
			r.Sent += o.Sent
			r.Lost += o.Lost
			r.LostAfterRestart += o.LostAfterRestart
		} else {
			o.Role = "idle"
			rec = bound[i]
		}
		if rec >= 0 && rec <= deadline {
			o.Recovered, o.RecoveryMS = true, ms(rec)
			if i < s.busy {
				busyTimes = append(busyTimes, rec)
			} else {
				idleTimes = append(idleTimes, rec)
			}
		} else {
			r.OK = false
		}
		if i < len(s.flows) {
			f := s.flows[i]
			o.Role = "busy+tcp"
			switch fa, err := f.firstAfter.Load(), f.error(); {
			case err != nil:
				o.TCP = err.Error()
			case fa == 0:
				o.TCP = "stalled"
			default:
				o.TCP = "survived"
				o.TCPRecoveryMS = ms(time.Duration(fa) - t0off)
				r.TCPSurvived++
			}
		}
		// Only a recovered B4's set says anything: one that never heard of
		// the loss still holds its old set, which the AFTR does not.
		o.SameSet = o.Recovered && after.Provisioned && before[i].PublicIPv4 == after.PublicIPv4 && before[i].Ports == after.Ports
		if o.SameSet {
			r.SameSet++
		}
		r.PerB4 = append(r.PerB4, o)
	}
	r.BusyRecovery = summarise(busyTimes, s.busy)
	r.IdleRecovery = summarise(idleTimes, len(s.w.Nodes)-s.busy)
	r.PCPRequests = meter.Total()
	peak, at := meter.Peak()
	r.PCPPeakPer100ms, r.PCPPeakAtMS = peak, ms(at)
	if a := s.w.AFTR; a != nil {
		c := a.Counters()
		r.ICMPv6Sent = c["out-icmpv6-packets"]
		r.ICMPv6RateLimited = c["drop-over-rate-limit-icmpv6-packets"]
	}
}

func summarise(ts []time.Duration, of int) Recovery {
	r := Recovery{Of: of, Recovered: len(ts)}
	if len(ts) == 0 {
		return r
	}
	slices.Sort(ts)
	rank := func(q float64) time.Duration { return ts[max(int(math.Ceil(q*float64(len(ts))))-1, 0)] }
	r.P50MS, r.P99MS, r.MaxMS = ms(rank(0.5)), ms(rank(0.99)), ms(ts[len(ts)-1])
	return r
}

func setString(st b4.Status) string {
	if !st.Provisioned {
		return "unprovisioned"
	}
	return fmt.Sprintf("%v ports %d-%d", st.PublicIPv4, st.Ports.First, st.Ports.Last())
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e5) / 10 }

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// tcpFlow is one long-lived TCP connection from a LAN host to the Internet
// host's echo, writing 16 octets every interval and reading them back.
type tcpFlow struct {
	conn       net.Conn
	s          *scenario
	echoes     atomic.Uint64
	firstAfter atomic.Int64 // first echo of data written after the restart (offset from base); 0: none
	stop       chan struct{}
	done       chan struct{}

	mu  sync.Mutex
	err error
}

func startFlow(ctx context.Context, n *Node, interval time.Duration, s *scenario) (*tcpFlow, error) {
	c, err := n.Host.DialTCP(ctx, netip.AddrPortFrom(ServerAddr, TCPEchoPort))
	if err != nil {
		return nil, fmt.Errorf("lab: TCP flow from %v: %w", n.Addr, err)
	}
	f := &tcpFlow{conn: c, s: s, stop: make(chan struct{}), done: make(chan struct{})}
	go f.run(interval)
	return f, nil
}

func (f *tcpFlow) run(interval time.Duration) {
	defer close(f.done)
	var msg, got [16]byte
	t := time.NewTicker(interval)
	defer t.Stop()
	for seq := uint64(1); ; seq++ {
		off := f.s.since()
		binary.BigEndian.PutUint64(msg[:], seq)
		binary.BigEndian.PutUint64(msg[8:], uint64(off))
		if _, err := f.conn.Write(msg[:]); err != nil {
			f.fail(err)
			return
		}
		if _, err := io.ReadFull(f.conn, got[:]); err != nil {
			f.fail(err)
			return
		}
		if !bytes.Equal(msg[:], got[:]) {
			f.fail(fmt.Errorf("echo %x, sent %x", got, msg))
			return
		}
		f.echoes.Add(1)
		if off >= f.s.t0.Load() {
			f.firstAfter.CompareAndSwap(0, f.s.since())
		}
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
	}
}

// fail records the flow's error, unless the scenario is closing it.
func (f *tcpFlow) fail(err error) {
	select {
	case <-f.stop:
		return
	default:
	}
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *tcpFlow) error() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *tcpFlow) close() {
	close(f.stop)
	f.conn.Close()
	<-f.done
}
