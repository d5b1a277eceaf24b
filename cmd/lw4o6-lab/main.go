// Command lw4o6-lab runs a whole Lightweight 4over6 deployment in one
// unprivileged process: an AFTR, N B4s provisioned by PCP, a LAN host behind
// each, and an Internet host. Every LAN host makes a TCP transfer, a UDP
// exchange and a ping; the lab prints what each B4 got and did, and exits 0
// only if every exchange succeeded.
//
// With --scenario aftr-restart it runs the failover scenario instead
// (scenario.go).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/lw4o6/lw4o6/internal/cli"
	"github.com/lw4o6/lw4o6/internal/lab"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	// The log and our own messages share stderr from many goroutines.
	stderr = cli.NewLockedWriter(stderr)
	fs := pflag.NewFlagSet("lw4o6-lab", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: lw4o6-lab [flags]

Runs an AFTR, N B4s (each provisioned by PCP MAP + PORT_SET through its
softwire), a LAN host behind each B4 and an Internet host, all in this
process with no privileges. Each LAN host downloads over TCP, exchanges a
UDP echo and pings the Internet host. Exit status 0 means every exchange
succeeded.

%s
Flags:
`, scenarioHelp)
		fs.PrintDefaults()
	}
	b4s := fs.Int("b4s", 3, fmt.Sprintf("number of B4s (1-500; with --scenario 1-%d)", lab.MaxB4s))
	poolS := fs.String("pool", "192.0.2.0/30", "IPv4 `CIDR` the AFTR hands out")
	ports := fs.Int("ports-per-b4", 2048, "port-set size per B4 (`N`, a power of two from 64 to 32768)")
	pcapDir := fs.String("pcap", "", "write `DIR`/access.pcap (IPv6 access network) and DIR/internet.pcap (AFTR's IPv4 side)")
	size := fs.Int("bytes", 1<<20, "TCP transfer size per LAN host, in octets")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long (with --scenario: on provisioning and the first traffic)")
	level := fs.String("log-level", "warn", "log level: debug, info, warn or error (with --scenario: error unless given)")
	sf := addScenarioFlags(fs)
	version := cli.VersionFlag(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "lw4o6-lab: %v (see --help)\n", err)
		return 2
	}
	if *version {
		return cli.PrintVersion(stdout, "lw4o6-lab")
	}
	pool, err := netip.ParsePrefix(*poolS)
	if err != nil || !pool.Addr().Is4() {
		fmt.Fprintf(stderr, "lw4o6-lab: --pool %q: want an IPv4 CIDR such as 192.0.2.0/30\n", *poolS)
		return 2
	}
	maxB4s := 500
	if sf.scenario != "" {
		maxB4s = lab.MaxB4s
	}
	if *b4s < 1 || *b4s > maxB4s {
		fmt.Fprintf(stderr, "lw4o6-lab: --b4s %d: want 1 to %d\n", *b4s, maxB4s)
		return 2
	}
	if *ports < 64 || *ports > 32768 || *ports&(*ports-1) != 0 {
		fmt.Fprintf(stderr, "lw4o6-lab: --ports-per-b4 %d: want a power of two from 64 to 32768\n", *ports)
		return 2
	}
	if *size < 0 || *size > 1<<30 {
		fmt.Fprintf(stderr, "lw4o6-lab: --bytes %d: want 0 to 1073741824\n", *size)
		return 2
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "lw4o6-lab: --log-level %q: want debug, info, warn or error\n", *level)
		return 2
	}
	if sf.scenario != "" && !fs.Changed("log-level") {
		// A thousand B4s each warning that its binding is lost say
		// nothing the report does not.
		lvl = slog.LevelError
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	if sf.scenario != "" || sf.changed(fs) {
		return runScenario(fs, sf, scenarioArgs{b4s: *b4s, pool: pool, ports: *ports, pcapDir: *pcapDir, timeout: *timeout, log: log}, stdout, stderr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()

	start := time.Now()
	w, err := lab.New(lab.Config{B4s: *b4s, Pool: pool, PortsPerB4: *ports, PcapDir: *pcapDir, Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "lw4o6-lab: %v\n", err)
		return 1
	}
	defer w.Close()
	if err := w.WaitProvisioned(ctx); err != nil {
		fmt.Fprintf(stderr, "lw4o6-lab: %v (is the pool large enough for %d B4s at %d ports each?)\n", err, *b4s, *ports)
		return 1
	}
	provisioned := time.Since(start)

	results := make([]lab.Result, len(w.Nodes))
	var wg sync.WaitGroup
	for i := range w.Nodes {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = w.Exchange(ctx, i, *size) }()
	}
	wg.Wait()
	return report(stdout, stderr, w, results, provisioned, *pcapDir)
}

func report(stdout, stderr io.Writer, w *lab.World, results []lab.Result, provisioned time.Duration, pcapDir string) int {
	fmt.Fprintf(stdout, "lw4o6 lab: AFTR %v, %d B4s provisioned by PCP in %v\n\n", lab.AFTRAddr, len(w.Nodes), provisioned.Round(time.Millisecond))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "B4\tLAN host\tpublic IPv4\tports\tflows\tTCP bytes\tTCP Mbit/s\tUDP bytes\tping RTT\tresult")
	failed := 0
	for i, n := range w.Nodes {
		st, r := n.B4.Status(), results[i]
		flows, res := 0, "ok"
		if r.TCPBytes > 0 {
			flows++
		}
		if r.UDPBytes > 0 {
			flows++
		}
		if r.RTT > 0 {
			flows++
		}
		if r.Err != nil {
			failed++
			res = "FAILED: " + r.Err.Error()
		}
		mbit := 0.0
		if r.TCPTime > 0 {
			mbit = float64(r.TCPBytes) * 8 / r.TCPTime.Seconds() / 1e6
		}
		fmt.Fprintf(tw, "%v\t%v\t%v\t%v\t%d\t%d\t%.0f\t%d\t%v\t%s\n", n.Addr, lab.LANHostAddr(i), st.PublicIPv4, st.Ports,
			flows, r.TCPBytes, mbit, r.UDPBytes, r.RTT.Round(time.Microsecond), res)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\nInternet host %v saw:\n", lab.ServerAddr)
	for _, s := range w.Server.Seen() {
		fmt.Fprintf(stdout, "  %s from %v (%d octets)\n", s.Proto, s.Remote, s.Bytes)
	}
	if pcapDir != "" {
		fmt.Fprintf(stdout, "\ncaptures: %s/access.pcap %s/internet.pcap\n", pcapDir, pcapDir)
	}
	if failed > 0 {
		fmt.Fprintf(stdout, "\n%d of %d B4s FAILED\n", failed, len(w.Nodes))
		return 1
	}
	fmt.Fprintf(stdout, "\nall %d B4s: TCP, UDP and ping OK\n", len(w.Nodes))
	return 0
}
