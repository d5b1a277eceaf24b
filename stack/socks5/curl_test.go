package socks5

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/internal/testenv"
)

// curl as a real client: plain --socks5 (curl resolves, sends an IPv4
// address) and --socks5-hostname (the server resolves).
func TestCurlInterop(t *testing.T) {
	curl := testenv.LookPath(t, "curl")
	checkLeaks(t)
	body := bytes.Repeat([]byte("lw4o6 socks5 "), 100000)
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	})}
	wln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go web.Serve(wln)
	t.Cleanup(func() { web.Close() })
	webPort := addrPortOf(wln.Addr()).Port()

	res := &fakeResolver{names: map[string][]netip.Addr{"web.test": {loopback4}}}
	proxy := startServer(t, &Server{Dialer: &netDialer{}, Resolver: res})

	run := func(args ...string) ([]byte, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, curl, append([]string{"-sS", "--max-time", "15", "--noproxy", ""}, args...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()} // no proxy variables, no .curlrc
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		return out, stderr.String(), err
	}
	want := sha256.Sum256(body)
	for _, args := range [][]string{
		{"--socks5", proxy, fmt.Sprintf("http://127.0.0.1:%d/", webPort)},
		{"--socks5-hostname", proxy, fmt.Sprintf("http://web.test:%d/", webPort)},
		{"-x", "socks5h://" + proxy, fmt.Sprintf("http://web.test:%d/", webPort)},
	} {
		out, stderr, err := run(args...)
		if err != nil {
			t.Fatalf("curl %s: %v: %s", strings.Join(args, " "), err, stderr)
		}
		if sha256.Sum256(out) != want {
			t.Fatalf("curl %s: got %d bytes, want %d", strings.Join(args, " "), len(out), len(body))
		}
	}

	// Failures are reported by curl, not hung.
	refused := closedPort(t)
	if _, stderr, err := run("--socks5", proxy, fmt.Sprintf("http://%v/", refused)); err == nil {
		t.Fatal("curl to a closed port succeeded")
	} else if !strings.Contains(stderr, "(5)") && !strings.Contains(strings.ToLower(stderr), "refused") {
		t.Errorf("curl to a closed port: %v: %s (want reply 5, connection refused)", err, stderr)
	}
	if _, stderr, err := run("--socks5-hostname", proxy, "http://nx.test/"); err == nil {
		t.Fatal("curl to an unknown name succeeded")
	} else if !strings.Contains(stderr, "(4)") && !strings.Contains(strings.ToLower(stderr), "unreachable") {
		t.Errorf("curl to an unknown name: %v: %s (want reply 4, host unreachable)", err, stderr)
	}
}
