package daemons

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/test/internal/daemon"
)

// examples/laptop-lab/run.sh as a user runs it: both daemons come up, the
// B4 is provisioned, and stopping the script stops both (it once exec'd
// the B4 and orphaned the AFTR), the B4 first so that its binding is
// deleted at the AFTR.
func TestLaptopLabScript(t *testing.T) {
	daemon.LockLaptopLab(t) // README.md's laptop lab uses the same ports
	cmd := exec.Command("bash", "../../examples/laptop-lab/run.sh")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 256)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	wait := func(what string, d time.Duration) {
		t.Helper()
		deadline := time.After(d)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("run.sh ended before %q", what)
				}
				if strings.Contains(l, what) {
					return
				}
			case <-deadline:
				cmd.Process.Kill()
				t.Fatalf("no %q within %v", what, d)
			}
		}
	}
	wait("provisioned:", 3*time.Minute) // the script builds both daemons first
	if p := labDaemons(); len(p) != 2 {
		t.Fatalf("daemons running: %q, want two", p)
	}
	cmd.Process.Signal(syscall.SIGTERM) // the script only, as a user's kill would
	wait("binding deleted by PCP", 10*time.Second)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		t.Fatal("run.sh did not end")
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(labDaemons()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("daemons left running after run.sh ended: %q", labDaemons())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// labDaemons lists the command lines of the laptop lab's daemons running
// now (those using its underlay port), from /proc.
func labDaemons() []string {
	var out []string
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue
		}
		c := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.HasPrefix(c, "bin/lw4o6-") && strings.Contains(c, "127.0.0.1:4666") {
			out = append(out, c)
		}
	}
	return out
}
