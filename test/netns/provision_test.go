package netns

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lw4o6/lw4o6/test/internal/daemon"
)

// Issue 7 item 4: `lw4o6-aftr provision`, run in the B4's namespace as a
// provisioning system on the access network, installs, shows, deletes and
// reinstalls a named B4's binding in a running AFTR daemon (raw underlay,
// --provision-listen on its access address).
func TestProvisionCommandAgainstDaemon(t *testing.T) {
	requireRoot(t)
	bin := daemon.Build(t)
	l := setup(t)
	aftrOut := l.daemon("aftr", bin+"/lw4o6-aftr", "--ipv6", aftrAddr, "--underlay", "raw", "--ipv4-side", "tun:lw4o6i",
		"--tun-addr", aftrInet+"/32", "--pool", pool, "--ports-per-b4", fmt.Sprint(portsPer),
		"--provisioner", "2001:db8:a::/64", "--provision-listen", "["+aftrAddr+"]:5351", "--log-level", "debug",
		"--state-dir", filepath.Join(l.dir, "aftr-state"))
	daemon.WaitLine(t, aftrOut, "AFTR ")
	const named = "2001:db8:a::3" // a B4 the provisioning system names
	provision := func(args ...string) (string, error) {
		cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns("b4"), bin + "/lw4o6-aftr", "provision",
			"--server", aftrAddr, "--b4", named, "--timeout", "20s"}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	want := func(out string, err error, sub string) {
		t.Helper()
		if err != nil || !strings.Contains(out, sub) {
			t.Fatalf("provision: %v\n%s\nwant %q", err, out, sub)
		}
	}
	out, err := provision("--ipv4", "192.0.2.1", "--ports", "4096-8191", "--lifetime", "1h")
	want(out, err, "B4 "+named+": IPv4 192.0.2.1 ports 4096-8191 (4096) lifetime 1h0m0s")
	// A renewal shows the binding the daemon holds.
	out, err = provision("--lifetime", "2h")
	want(out, err, "IPv4 192.0.2.1 ports 4096-8191 (4096) lifetime 2h0m0s")
	out, err = provision("--delete")
	want(out, err, "binding deleted")
	// Deleted: another set can be installed (a live binding would be
	// renewed as it was, and the command would exit 1).
	out, err = provision("--ipv4", "192.0.2.2", "--ports", "8192-12287")
	want(out, err, "IPv4 192.0.2.2 ports 8192-12287 (4096)")
}
