package main

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/lw4o6/lw4o6/aftr"
	"github.com/lw4o6/lw4o6/internal/testenv"
)

type nullLink struct{}

func (nullLink) Send([]byte) {}

// provisionAFTR is an in-process AFTR answering provisioning systems in
// provisioners on a loopback UDP socket; it returns the AFTR and the
// socket's address.
func provisionAFTR(t *testing.T, provisioners ...string) (*aftr.AFTR, string) {
	t.Helper()
	cfg := aftr.DefaultConfig()
	cfg.Addr = netip.MustParseAddr("2001:db8::1")
	cfg.Pools = []netip.Prefix{netip.MustParsePrefix("192.0.2.8/29")}
	for _, p := range provisioners {
		cfg.Provisioners = append(cfg.Provisioners, netip.MustParsePrefix(p))
	}
	a, err := aftr.New(cfg, nullLink{}, nullLink{})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "[::1]:0")
	if err != nil {
		testenv.Missing(t, "no IPv6 loopback: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.ServeProvisioning(ctx, pc) }()
	t.Cleanup(func() { cancel(); <-done; pc.Close() })
	return a, pc.LocalAddr().String()
}

func runOut(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// Issue 7 item 4: `lw4o6-aftr provision` installs, renews (showing the
// binding) and deletes a named B4's binding through the real PCP client.
func TestProvisionCommand(t *testing.T) {
	a, server := provisionAFTR(t, "::1/128")
	b4 := "2001:db8:b::1"
	code, out, errs := runOut("provision", "--server", server, "--b4", b4, "--ipv4", "192.0.2.9", "--ports", "4096-6143", "--lifetime", "1h")
	if code != 0 || out != "B4 2001:db8:b::1: IPv4 192.0.2.9 ports 4096-6143 (2048) lifetime 1h0m0s\n" {
		t.Fatalf("install: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	bs := a.Bindings()
	if len(bs) != 1 || bs[0].B4.String() != b4 || bs[0].IPv4.String() != "192.0.2.9" {
		t.Fatalf("bindings %v", bs)
	}
	// A renewal returns the binding as it is.
	code, out, errs = runOut("provision", "--server", server, "--b4", b4, "--lifetime", "2h")
	if code != 0 || !strings.Contains(out, "IPv4 192.0.2.9 ports 4096-6143 (2048) lifetime 2h0m0s") {
		t.Fatalf("renew: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	// Another set asked for a bound B4: shown, exit 1.
	code, out, errs = runOut("provision", "--server", server, "--b4", b4, "--ipv4", "192.0.2.10", "--ports", "2048-4095")
	if code != 1 || !strings.Contains(out, "192.0.2.9") || !strings.Contains(errs, "not as asked") {
		t.Fatalf("other set: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = runOut("provision", "--server", server, "--b4", b4, "--delete")
	if code != 0 || out != "B4 2001:db8:b::1: binding deleted\n" {
		t.Fatalf("delete: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if bs := a.Bindings(); len(bs) != 0 {
		t.Fatalf("bindings after delete: %v", bs)
	}
}

// An AFTR that does not count this host among its provisioning systems
// does not answer: the command gives up at --timeout with a clear error.
func TestProvisionCommandUnauthorized(t *testing.T) {
	a, server := provisionAFTR(t, "2001:db8:ff::/64")
	code, _, errs := runOut("provision", "--server", server, "--b4", "2001:db8:b::1", "--timeout", "500ms")
	if code != 1 || !strings.Contains(errs, "no answer from") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if n := a.Counters()["drop-pcp-unauthorized-ipv6-packets"]; n == 0 {
		t.Errorf("unauthorised request not counted: %v", a.Counters())
	}
	if bs := a.Bindings(); len(bs) != 0 {
		t.Fatalf("bindings %v", bs)
	}
}

func TestProvisionCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--b4", "2001:db8:b::1"},
		{"--server", "2001:db8::1"},
		{"--server", "2001:db8::1", "--b4", "192.0.2.1"},
		{"--server", "2001:db8::1", "--b4", "2001:db8:b::1", "--ports", "10-5"},
		{"--server", "2001:db8::1", "--b4", "2001:db8:b::1", "--ports", "1-2", "--size", "4"},
		{"--server", "2001:db8::1", "--b4", "2001:db8:b::1", "--delete", "--lifetime", "1h"},
		{"--server", "2001:db8::1", "--b4", "2001:db8:b::1", "--ipv4", "2001:db8::2"},
		{"--server", "nowhere", "--b4", "2001:db8:b::1"},
	} {
		if code, _, errs := runOut(append([]string{"provision"}, args...)...); code != 2 || errs == "" {
			t.Errorf("%v: exit %d, stderr %q, want 2 and a reason", args, code, errs)
		}
	}
}
