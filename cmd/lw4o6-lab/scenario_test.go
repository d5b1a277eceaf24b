package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/lw4o6/lw4o6/internal/lab"
)

// Bad scenario flags: exit 2, naming the flag, before anything runs.
func TestScenarioBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--scenario", "aftr-restart", "--failover", "carrier-pigeon"}, "--failover"},
		{[]string{"--scenario", "aftr-reboot"}, "--scenario"},
		{[]string{"--failover", "icmp"}, "--failover needs --scenario"},
		{[]string{"--json"}, "--json needs --scenario"},
		{[]string{"--scenario", "aftr-restart", "--idle", "1.5"}, "--idle"},
		{[]string{"--scenario", "aftr-restart", "--idle", "NaN"}, "--idle"},
		{[]string{"--scenario", "aftr-restart", "--interval", "0s"}, "--interval"},
		{[]string{"--scenario", "aftr-restart", "--recover-within", "0s"}, "--recover-within"},
		{[]string{"--scenario", "aftr-restart", "--tcp-flows", "-1"}, "--tcp-flows"},
		{[]string{"--scenario", "aftr-restart", "--bytes", "10"}, "--bytes"},
		{[]string{"--scenario", "aftr-restart", "--b4s", "4001"}, "--b4s"},
		{[]string{"--b4s", "501"}, "--b4s"},
	} {
		var out, errb bytes.Buffer
		if code := run(c.args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", c.args, code, errb.String())
		}
		if !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: stderr %q lacks %q", c.args, errb.String(), c.want)
		}
	}
}

// A pool that cannot hold --b4s is refused before anything starts, and
// without --pool one that fits is chosen.
func TestScenarioPool(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"--scenario", "aftr-restart", "--b4s", "200", "--pool", "192.0.2.0/30"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "holds 124 B4s") || !strings.Contains(errb.String(), "200 B4s asked") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	code = run([]string{"--scenario", "aftr-restart", "--b4s", "200", "--idle", "0", "--tcp-flows", "0", "--downtime", "100ms", "--json"}, &out, &errb)
	var r lab.FailoverReport
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("exit %d, %v\nstdout %s\nstderr %s", code, err, out.String(), errb.String())
	}
	if code != 0 || r.Pool != "192.0.2.0/29" || r.B4s != 200 || !r.OK {
		t.Fatalf("exit %d, pool %s, %d B4s, ok %v", code, r.Pool, r.B4s, r.OK)
	}
}

// --json prints the whole report, which parses; the exit status says
// whether every B4 recovered: with ICMPv6 only, an idle B4 does not.
func TestScenarioJSONAndExitStatus(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"--scenario", "aftr-restart", "--b4s", "4", "--idle", "0.25", "--tcp-flows", "1",
		"--downtime", "200ms", "--recover-within", "3s", "--json"}, &out, &errb)
	var r lab.FailoverReport
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("exit %d, %v\nstdout %s\nstderr %s", code, err, out.String(), errb.String())
	}
	if code != 1 || r.OK {
		t.Errorf("exit %d, ok %v: an idle B4 never recovers with ICMPv6 alone", code, r.OK)
	}
	if r.Scenario != "aftr-restart" || r.Failover != lab.FailoverICMP || r.B4s != 4 || r.Busy != 3 || r.Idle != 1 || r.TCPFlows != 1 ||
		len(r.PerB4) != 4 || r.BusyRecovery.Recovered != 3 || r.IdleRecovery.Recovered != 0 || r.Sent == 0 || r.PCPRequests == 0 {
		t.Errorf("report: %s", out.String())
	}
	if r.PerB4[0].Role != "busy+tcp" || r.PerB4[0].TCP == "" || r.PerB4[3].Role != "idle" || r.PerB4[3].Recovered {
		t.Errorf("per B4: %+v", r.PerB4)
	}

	// The text report of the same run says it in words.
	out.Reset()
	errb.Reset()
	code = run([]string{"--scenario", "aftr-restart", "--b4s", "4", "--idle", "0.25", "--tcp-flows", "0",
		"--downtime", "200ms", "--recover-within", "2s"}, &out, &errb)
	for _, want := range []string{"3 busy, 1 idle", "recovered, busy (traffic flowing again):     3 of 3",
		"recovered, idle (binding back at the AFTR):  0 of 1", "1 of 4 B4s NOT recovered", "3 (idle)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, out.String())
		}
	}
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
}
