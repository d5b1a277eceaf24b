package daemons

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lw4o6/lw4o6/internal/testenv"
	"github.com/lw4o6/lw4o6/test/internal/daemon"
)

// The shipped systemd units pass `systemd-analyze verify` (issue 10 item 7)
// with their ExecStart pointed at the binaries built here, and keep state
// (StateDirectory=) with only the capabilities the daemons need.
func TestSystemdUnits(t *testing.T) {
	analyze := testenv.LookPath(t, "systemd-analyze")
	bin := daemon.Build(t)
	dir := t.TempDir()
	for _, name := range []string{"lw4o6-aftr", "lw4o6-b4"} {
		src, err := os.ReadFile(filepath.Join("..", "..", "examples", "systemd", name+".service"))
		if err != nil {
			t.Fatal(err)
		}
		unit := string(src)
		for _, want := range []string{"StateDirectory=" + name, "DynamicUser=yes", "NoNewPrivileges=yes",
			"CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW"} {
			if !strings.Contains(unit, want) {
				t.Errorf("%s.service lacks %q", name, want)
			}
		}
		unit = strings.ReplaceAll(unit, "/usr/local/bin/"+name, filepath.Join(bin, name))
		p := filepath.Join(dir, name+".service")
		if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", p).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) != 0 {
			t.Errorf("systemd-analyze verify %s.service: %v\n%s", name, err, out)
		}
	}
}
