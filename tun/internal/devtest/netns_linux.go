package devtest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lw4o6/lw4o6/internal/testenv"
)

var netnsSeq atomic.Uint64

// Netns is a network namespace made for one test.
type Netns struct {
	Name string
	t    testing.TB
}

// NewNetns makes a network namespace with `ip netns add` and deletes it when
// the test ends. It skips the test unless it runs as root with `ip`.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	testenv.RequireRoot(t, "to make a network namespace")
	testenv.LookPath(t, "ip")
	name := fmt.Sprintf("lw4o6t-%d-%d", os.Getpid(), netnsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return &Netns{Name: name, t: t}
}

// IP runs `ip -n NAME args...` and fails the test on error.
func (n *Netns) IP(args ...string) {
	n.t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("ip -n %s %s: %v: %s", n.Name, strings.Join(args, " "), err, out)
	}
}

// Do runs fn on a thread that has entered the namespace, then returns the
// thread to the namespace it came from. Sockets and TUN devices that fn
// opens stay in the namespace.
func (n *Netns) Do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + n.Name)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", n.Name, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime retires it when this
		// goroutine exits instead of reusing it in the wrong namespace.
		return fmt.Errorf("setns back: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// AddLoopback puts addr (an IPv6 address) on the namespace's loopback and
// waits until the kernel delivers packets to it: the address is usable for
// bind at once with nodad, but its local route is installed a moment
// later, by addrconf's DAD work.
func (n *Netns) AddLoopback(addr string) {
	n.t.Helper()
	n.IP("link", "set", "lo", "up")
	n.IP("-6", "addr", "add", addr+"/128", "dev", "lo", "nodad")
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := exec.Command("ip", "-n", n.Name, "-6", "route", "show", "table", "local", addr).Output()
		if err == nil && len(strings.TrimSpace(string(out))) > 0 {
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("no local route for %s in %s: %v: %s", addr, n.Name, err, out)
		}
		time.Sleep(time.Millisecond)
	}
}
