package daemons

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/test/internal/daemon"
)

// examples/embed against a running lw4o6-aftr over the UDP underlay: the
// embedded B4 is provisioned by the daemon and fetches a page from a
// loopback HTTP server through it.
func TestEmbedExampleAgainstDaemon(t *testing.T) {
	dir := daemon.Build(t)
	bin := filepath.Join(t.TempDir(), "embed")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/lw4o6/lw4o6/examples/embed").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "from the test's server\n") }))

	under := freePort(t, "udp")
	aftrOut := start(t, dir+"/lw4o6-aftr", "--ipv6", "2001:db8::1", "--underlay", "udp",
		"--underlay-listen", fmt.Sprintf("127.0.0.1:%d", under), "--ipv4-side", "host", "--egress-allow-loopback",
		"--pool", "192.0.2.0/30", "--ports-per-b4", "4096", "--state-dir", stateDir(t))
	daemon.WaitLine(t, aftrOut, "AFTR ")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url := "http://" + ln.Addr().String() + "/"
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-underlay", fmt.Sprintf("127.0.0.1:%d", under), "-aftr", "2001:db8::1",
		"-b4", "2001:db8:b4::7", "-url", url)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	want := regexp.MustCompile(`^B4 2001:db8:b4::7 provisioned: public IPv4 192\.0\.2\.\d+, ports \d+-\d+
GET ` + regexp.QuoteMeta(url) + ` through the B4: "from the test's server\\n"
listening on 198\.18\.0\.2:8080, reachable from the Internet at 192\.0\.2\.\d+:\d+
$`)
	if !want.MatchString(stdout.String()) {
		t.Errorf("output:\n%s\nwant it to match:\n%s\nstderr:\n%s", stdout.String(), want, stderr.String())
	}
}
