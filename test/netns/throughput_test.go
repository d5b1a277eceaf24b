package netns

import (
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/internal/testenv"
	"github.com/lw4o6/lw4o6/test/internal/daemon"
)

// TestThroughput measures one TCP stream with iperf3 from the LAN host to
// the Internet host through the daemons (TUN → B4 → raw 4in6 on a veth →
// AFTR → TUN). By default (and in CI) it runs 2 s and only asserts that the
// stream carried data through lw4o6, so the iperf3 path cannot rot
// unseen; with LW4O6_THROUGHPUT=1 it runs 10 s and measures the same
// namespaces routed by the kernel alone as a baseline, logging both.
//
//	LW4O6_THROUGHPUT=1 go test -v -run Throughput ./test/netns/
func TestThroughput(t *testing.T) {
	requireRoot(t)
	testenv.LookPath(t, "iperf3")
	measure := os.Getenv("LW4O6_THROUGHPUT") != ""
	secs := 2
	if measure {
		secs = 10
	}
	bin := daemon.Build(t)

	// Through lw4o6.
	l := setup(t)
	l.startDaemons(bin)
	rate, summary := l.iperf(secs)
	t.Logf("lw4o6 (userspace B4 + AFTR, TUN/raw 4in6): %s", summary)
	if rate <= 0 {
		t.Fatalf("no data through lw4o6: %s", summary)
	}
	if !measure {
		return
	}

	// The kernel's own tunnel would be ip6tnl + iptables SNAT; this kernel
	// may lack ip6tnl, in which case plain kernel routing over the same
	// namespaces is the baseline.
	k := setup(t)
	if err := exec.Command("ip", "netns", "exec", k.ns("b4"), "ip", "link", "add", "t6", "type", "ip6tnl",
		"local", b4Access, "remote", aftrAddr, "mode", "ipip6").Run(); err != nil {
		t.Logf("kernel ip6tnl unavailable (%v): baseline is plain kernel IPv4 routing", err)
		k.in("b4", "ip", "addr", "add", "198.51.100.1/30", "dev", "acc0")
		k.in("aftr", "ip", "addr", "add", "198.51.100.2/30", "dev", "acc0")
		k.in("b4", "ip", "route", "add", "default", "via", "198.51.100.2")
		k.in("inet", "ip", "route", "add", "198.18.0.0/15", "via", aftrInet)
		k.in("aftr", "ip", "route", "add", "198.18.0.0/15", "via", "198.51.100.1")
		_, kr := k.iperf(secs)
		t.Logf("kernel routing (no tunnel, no NAT): %s", kr)
		return
	}
	k.in("b4", "ip", "link", "set", "t6", "up")
	k.in("b4", "ip", "addr", "add", "192.0.2.1/32", "dev", "t6")
	k.in("b4", "ip", "route", "add", "default", "dev", "t6")
	k.in("b4", "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "t6", "-p", "tcp", "-j", "SNAT", "--to-source", "192.0.2.1:4096-8191")
	k.in("aftr", "ip", "link", "add", "t6", "type", "ip6tnl", "local", aftrAddr, "remote", b4Access, "mode", "ipip6")
	k.in("aftr", "ip", "link", "set", "t6", "up")
	k.in("aftr", "ip", "route", "add", "192.0.2.1/32", "dev", "t6")
	_, kr := k.iperf(secs)
	t.Logf("kernel ip6tnl + iptables SNAT: %s", kr)
}

// iperf runs a single-stream iperf3 test of secs seconds from the LAN host
// to the Internet host and returns the receiver's rate in bit/s and a
// summary.
func (l *lab) iperf(secs int) (float64, string) {
	srv := exec.Command("ip", "netns", "exec", l.ns("inet"), "iperf3", "-s", "-1", "-B", inetHost)
	if err := srv.Start(); err != nil {
		l.t.Fatal(err)
	}
	defer srv.Wait()
	time.Sleep(500 * time.Millisecond)
	out, err := exec.Command("ip", "netns", "exec", l.ns("lan"), "iperf3", "-c", inetHost, "-t", strconv.Itoa(secs), "-J").Output()
	if err != nil {
		srv.Process.Kill()
		l.t.Fatalf("iperf3: %v\n%s", err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		l.t.Fatalf("iperf3 output: %v\n%s", err, strings.TrimSpace(string(out)))
	}
	return r.End.SumReceived.BitsPerSecond, strings.TrimSpace(strings.Join([]string{
		formatRate(r.End.SumReceived.BitsPerSecond), "received,", itoa(r.End.SumSent.Retransmits), "retransmits"}, " "))
}

func formatRate(bps float64) string {
	return strings.TrimRight(strings.TrimRight(ftoa(bps/1e9), "0"), ".") + " Gbit/s"
}

func itoa(i int) string     { return strconv.Itoa(i) }
func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) }
