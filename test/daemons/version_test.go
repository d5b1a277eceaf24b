package daemons

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/lw4o6/lw4o6/test/internal/daemon"
)

// The built commands answer --version: one line naming the command, the
// module and the Go toolchain, exit 0.
func TestVersionFlags(t *testing.T) {
	dir := daemon.Build(t)
	labDir := t.TempDir() // daemon.Build makes the daemons only
	if out, err := exec.Command("go", "build", "-o", labDir+"/", "github.com/lw4o6/lw4o6/cmd/lw4o6-lab").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, args := range [][]string{
		{"lw4o6-aftr", "--version"},
		{"lw4o6-aftr", "reload", "--version"},
		{"lw4o6-aftr", "check", "--version"},
		{"lw4o6-aftr", "provision", "--version"},
		{"lw4o6-b4", "--version"},
		{"lw4o6-lab", "--version"},
	} {
		bin := dir + "/" + args[0]
		if args[0] == "lw4o6-lab" {
			bin = labDir + "/" + args[0]
		}
		out, err := exec.Command(bin, args[1:]...).Output()
		s := string(out)
		name := strings.Join(args[:len(args)-1], " ") + " "
		if err != nil || !strings.HasPrefix(s, name) || !strings.Contains(s, "github.com/lw4o6/lw4o6") || !strings.Contains(s, " go1.") || strings.Count(s, "\n") != 1 {
			t.Errorf("%q: %v, %q", args, err, s)
		}
	}
}
