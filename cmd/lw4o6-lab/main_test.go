package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lw4o6/lw4o6/internal/testenv"
)

// The README's main command: every exchange succeeds and the report says so.
func TestLabReport(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--b4s", "3", "--bytes", "200000"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	s := out.String()
	for _, want := range []string{"3 B4s provisioned by PCP", "all 3 B4s: TCP, UDP and ping OK", "192.0.2."} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
}

// Bad flags name the flag and what is allowed, with exit status 2.
func TestLabBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--pool", "2001:db8::/64"},
		{"--b4s", "0"},
		{"--ports-per-b4", "1000"},
		{"--log-level", "loud"},
		{"--no-such-flag"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		if !strings.Contains(errb.String(), strings.TrimPrefix(args[0], "--")) {
			t.Errorf("%v: error does not name the flag: %q", args, errb.String())
		}
	}
}

// More B4s than the pool holds: the lab fails before anything starts, and
// says the pool's size, the ports per B4 and the B4s asked.
func TestLabPoolTooSmall(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"--b4s", "3", "--pool", "192.0.2.1/32", "--ports-per-b4", "32768", "--timeout", "5s"}, &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	for _, want := range []string{"pool 192.0.2.1/32 holds 1 B4s", "32768 ports per B4", "3 B4s asked"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr %q lacks %q", errb.String(), want)
		}
	}
}

// --pcap captures decode in tshark as PCP MAP with PORT_SET inside
// IPv4-in-IPv6 (the portcontrol dissector). Skipped without tshark; CI
// installs it.
func TestLabPcapDecodesAsPCP(t *testing.T) {
	tshark := testenv.LookPath(t, "tshark")
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := run([]string{"--b4s", "2", "--bytes", "10000", "--pcap", dir}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	cmd := exec.Command(tshark, "-r", filepath.Join(dir, "access.pcap"), "-Y", "portcontrol", "-T", "fields",
		"-e", "ipv6.nxt", "-e", "ip.src", "-e", "ip.dst", "-e", "portcontrol.opcode", "-e", "portcontrol.result_code",
		"-e", "portcontrol.option.code")
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, res)
	}
	lines := strings.Split(strings.TrimSpace(string(res)), "\n")
	var req, resp int
	for _, l := range lines {
		f := strings.Split(l, "\t")
		if len(f) < 6 {
			continue
		}
		// Next header 4, inner 192.0.0.2 <-> 192.0.0.1, opcode MAP (1), option 130 (PORT_SET).
		if f[0] != "4" || f[3] != "1" || !strings.Contains(f[5], "130") {
			continue
		}
		switch {
		case f[1] == "192.0.0.2" && f[2] == "192.0.0.1" && f[4] == "":
			req++
		case f[1] == "192.0.0.1" && f[2] == "192.0.0.2" && f[4] == "0": // SUCCESS
			resp++
		}
	}
	if req < 2 || resp < 2 {
		t.Fatalf("tshark found %d MAP+PORT_SET requests and %d responses in 4in6, want 2 each:\n%s", req, resp, res)
	}
	// The Internet side carries plain IPv4 from the shared addresses.
	res, err = exec.Command(tshark, "-r", filepath.Join(dir, "internet.pcap"), "-T", "fields", "-e", "ip.src").CombinedOutput()
	if err != nil || !strings.Contains(string(res), "192.0.2.") {
		t.Fatalf("internet.pcap: %v\n%s", err, res)
	}
}
