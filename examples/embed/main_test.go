package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// checkOutput checks what the program prints in its self-contained mode:
// provisioned, a page fetched from loopback through the B4, a mapped
// listener and a page fetched from it at its public address.
func checkOutput(t *testing.T, out string) {
	t.Helper()
	want := regexp.MustCompile(`^B4 2001:db8:b4::2 provisioned: public IPv4 (192\.0\.2\.\d+), ports \d+-\d+
GET http://127\.0\.0\.1:\d+/ through the B4: "hello from 127\.0\.0\.1\\n"
listening on 198\.18\.0\.2:8080, reachable from the Internet at (192\.0\.2\.\d+):(\d+)
GET http://192\.0\.2\.\d+:\d+/ from 198\.51\.100\.10: "hello from the embedded B4's listener, 198\.51\.100\.10:\d+\\n"
$`)
	m := want.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("output:\n%s\nwant it to match:\n%s", out, want)
	}
	if m[1] != m[2] {
		t.Errorf("public IPv4 %s, listener's public address on %s", m[1], m[2])
	}
}

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(nil, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	checkOutput(t, out.String())
}

// TestProgram builds the example and runs it as a user would.
func TestProgram(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the program")
	}
	bin := filepath.Join(t.TempDir(), "embed")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	checkOutput(t, stdout.String())
	// Warnings are the B4 reporting what it recovered from (a 1/5 racing
	// its first provisioning on a loaded machine); errors are failures.
	if strings.Contains(stderr.String(), "level=ERROR") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-aftr", "192.0.2.1"}, {"-b4", "nonsense"}, {"-nosuchflag"}} {
		var out bytes.Buffer
		if err := run(args, &out); err == nil {
			t.Errorf("run(%q) succeeded:\n%s", args, out.String())
		}
	}
}
