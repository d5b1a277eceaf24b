package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/lw4o6/lw4o6/internal/lab"
)

// scenarioHelp is the --help text of the failover scenario. The memory
// figure is measured (BENCHMARKS.md, "Failover: aftr-restart").
const scenarioHelp = `With --scenario aftr-restart, the failover scenario instead: every busy B4
sends a UDP probe every --interval to an Internet echo (and up to
--tcp-flows of them keep a TCP flow open), a fraction --idle of the B4s send
nothing; then the AFTR is stopped, and after --downtime a new AFTR starts
on the same address (with --journal, from its journal). The report gives
per B4 the time from the restart until traffic flows again (idle B4s: until
the new AFTR holds their binding again), the probes lost, whether the TCP
flows survived, and the new AFTR's peak PCP request rate per 100 ms; p50,
p99 and max over the B4s; --json prints it all as JSON. Exit status 1 if
any B4 did not recover within --recover-within. Without a LAN host of its
own a B4 costs about 180 KiB of heap and stacks (1000 B4s: 176 MiB, 160 MB
resident; BENCHMARKS.md); --pool is chosen to fit --b4s unless given.
`

type scenarioFlags struct {
	scenario      string
	failover      string
	journal       bool
	idle          float64
	tcpFlows      int
	interval      time.Duration
	downtime      time.Duration
	recoverWithin time.Duration
	icmpRate      int
	json          bool
}

var scenarioOnly = []string{"failover", "journal", "idle", "tcp-flows", "interval", "downtime", "recover-within", "icmp-rate", "json"}

func addScenarioFlags(fs *pflag.FlagSet) *scenarioFlags {
	f := &scenarioFlags{}
	fs.StringVar(&f.scenario, "scenario", "", "run a scenario instead of the exchanges: aftr-restart")
	fs.StringVar(&f.failover, "failover", "icmp", "with --scenario: how B4s learn of the AFTR's lost state: icmp (ICMPv6 1/5), announce (PCP ANNOUNCE) or both")
	fs.BoolVar(&f.journal, "journal", false, "with --scenario: the AFTR restarts from its journal (in a temporary state directory)")
	fs.Float64Var(&f.idle, "idle", 0.1, "with --scenario: fraction of B4s with no traffic of their own (0-1)")
	fs.IntVar(&f.tcpFlows, "tcp-flows", 20, "with --scenario: busy B4s (at most) with a gVisor LAN host keeping a TCP flow open")
	fs.DurationVar(&f.interval, "interval", 100*time.Millisecond, "with --scenario: time between two probes of a busy B4")
	fs.DurationVar(&f.downtime, "downtime", time.Second, "with --scenario: time between the AFTR's stop and the new instance's start")
	fs.DurationVar(&f.recoverWithin, "recover-within", 30*time.Second, "with --scenario: a B4 not recovered this long after the restart never recovered")
	fs.IntVar(&f.icmpRate, "icmp-rate", 0, "with --scenario: the AFTR's ICMP errors per second (0: its default, 100)")
	fs.BoolVar(&f.json, "json", false, "with --scenario: print the report as JSON")
	return f
}

// changed reports whether a scenario-only flag was given.
func (f *scenarioFlags) changed(fs *pflag.FlagSet) bool {
	for _, n := range scenarioOnly {
		if fs.Changed(n) {
			return true
		}
	}
	return false
}

type scenarioArgs struct {
	b4s     int
	pool    netip.Prefix
	ports   int
	pcapDir string
	timeout time.Duration
	log     *slog.Logger
}

func runScenario(fs *pflag.FlagSet, f *scenarioFlags, a scenarioArgs, stdout, stderr io.Writer) int {
	bad := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "lw4o6-lab: "+format+" (see --help)\n", args...)
		return 2
	}
	if f.scenario == "" {
		for _, n := range scenarioOnly {
			if fs.Changed(n) {
				return bad("--%s needs --scenario %s", n, lab.ScenarioAFTRRestart)
			}
		}
	}
	if f.scenario != lab.ScenarioAFTRRestart {
		return bad("--scenario %q: want %s", f.scenario, lab.ScenarioAFTRRestart)
	}
	if fs.Changed("bytes") {
		return bad("--bytes is for the exchanges, not --scenario")
	}
	mode, err := lab.ParseFailover(f.failover)
	if err != nil {
		return bad("--failover %q: want icmp, announce or both", f.failover)
	}
	if f.idle < 0 || f.idle > 1 || f.idle != f.idle {
		return bad("--idle %v: want a fraction from 0 to 1", f.idle)
	}
	if f.tcpFlows < 0 || f.tcpFlows > 100 {
		return bad("--tcp-flows %d: want 0 to 100", f.tcpFlows)
	}
	if f.icmpRate < 0 || f.icmpRate > 1000000 {
		return bad("--icmp-rate %d: want 0 to 1000000", f.icmpRate)
	}
	if f.interval < time.Millisecond {
		return bad("--interval %v: want 1ms or more", f.interval)
	}
	if f.downtime < 0 {
		return bad("--downtime %v: want 0 or more", f.downtime)
	}
	if f.recoverWithin <= 0 {
		return bad("--recover-within %v: want more than 0", f.recoverWithin)
	}
	pool := a.pool
	if !fs.Changed("pool") {
		p, ok := lab.PoolFor(a.b4s, a.ports)
		if !ok {
			fmt.Fprintf(stderr, "lw4o6-lab: 192.0.2.0/24 cannot hold %d B4s at %d ports each: give --pool or fewer --ports-per-b4\n", a.b4s, a.ports)
			return 1
		}
		pool = p
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	r, err := lab.RunFailover(ctx, lab.FailoverConfig{
		B4s: a.b4s, Idle: f.idle, TCPFlows: f.tcpFlows, Failover: mode, Journal: f.journal,
		Pool: pool, PortsPerB4: a.ports, Interval: f.interval, Setup: a.timeout,
		Downtime: f.downtime, RecoverWithin: f.recoverWithin, ICMPRate: f.icmpRate, PcapDir: a.pcapDir, Logger: a.log,
	})
	if err != nil {
		fmt.Fprintf(stderr, "lw4o6-lab: %v\n", err)
		return 1
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			fmt.Fprintf(stderr, "lw4o6-lab: %v\n", err)
			return 1
		}
	} else {
		printFailover(stdout, r)
	}
	if !r.OK {
		return 1
	}
	return 0
}

func printFailover(w io.Writer, r *lab.FailoverReport) {
	journal := "no journal"
	if r.Journal {
		journal = "journal"
		if r.Restored {
			journal += " (state restored)"
		}
	}
	fmt.Fprintf(w, "lw4o6 lab, scenario %s: %d B4s (%d busy, %d idle, %d with a TCP flow), failover %s, %s\n",
		r.Scenario, r.B4s, r.Busy, r.Idle, r.TCPFlows, r.Failover, journal)
	fmt.Fprintf(w, "pool %s, %d ports per B4, provisioned in %.0f ms; a probe per busy B4 every %.0f ms; AFTR down %.0f ms\n\n",
		r.Pool, r.PortsPerB4, r.ProvisionMS, r.IntervalMS, r.DowntimeMS)
	rec := func(name string, s lab.Recovery) {
		if s.Of == 0 {
			return
		}
		fmt.Fprintf(w, "%-44s %d of %d", name, s.Recovered, s.Of)
		if s.Recovered > 0 {
			fmt.Fprintf(w, "   p50 %.0f ms  p99 %.0f ms  max %.0f ms", s.P50MS, s.P99MS, s.MaxMS)
		}
		fmt.Fprintln(w)
	}
	rec("recovered, busy (traffic flowing again):", r.BusyRecovery)
	rec("recovered, idle (binding back at the AFTR):", r.IdleRecovery)
	fmt.Fprintf(w, "%-44s %d of %d sent (%d sent after the restart)\n", "probes lost:", r.Lost, r.Sent, r.LostAfterRestart)
	if r.TCPFlows > 0 {
		fmt.Fprintf(w, "%-44s %d of %d\n", "TCP flows survived:", r.TCPSurvived, r.TCPFlows)
	}
	fmt.Fprintf(w, "%-44s %d, peak %d per 100 ms (at %.0f ms)\n", "PCP requests to the new AFTR:", r.PCPRequests, r.PCPPeakPer100ms, r.PCPPeakAtMS)
	fmt.Fprintf(w, "%-44s %d sent, %d held back by its rate limit (%d/s)\n", "ICMPv6 errors from the new AFTR:", r.ICMPv6Sent, r.ICMPv6RateLimited, r.ICMPRate)
	fmt.Fprintf(w, "%-44s %d of %d\n", "recovered with the same address and ports:", r.SameSet, r.B4s)
	fmt.Fprintf(w, "%-44s %.1f MiB, %.0f KiB per B4, %d goroutines\n", "memory (heap + stacks, provisioned):",
		float64(r.MemoryBytes)/(1<<20), float64(r.MemoryPerB4Bytes)/1024, r.Goroutines)
	var never []string
	for _, o := range r.PerB4 {
		if !o.Recovered {
			never = append(never, fmt.Sprintf("%d (%s)", o.Index, o.Role))
		}
	}
	if len(never) == 0 {
		fmt.Fprintf(w, "\nall %d B4s recovered within %.0f ms\n", r.B4s, r.RecoverWithinMS)
		return
	}
	list := never
	if len(list) > 10 {
		list = append(list[:10:10], fmt.Sprintf("and %d more", len(never)-10))
	}
	fmt.Fprintf(w, "\n%d of %d B4s NOT recovered within %.0f ms: %s\n", len(never), r.B4s, r.RecoverWithinMS, strings.Join(list, ", "))
}
