package watertun

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/internal/testenv"
	"github.com/lw4o6/lw4o6/tun"
	"github.com/lw4o6/lw4o6/tun/internal/devtest"
)

func TestTUNInNetns(t *testing.T) {
	devtest.LeakCheck(t)
	ns := devtest.NewNetns(t)
	testenv.RequireFile(t, "/dev/net/tun", "/dev/net/tun")
	var d *Device
	if err := ns.Do(func() (err error) { d, err = Open("lw4o6t0", 1400); return err }); err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer d.Close()
	if d.Name() != "lw4o6t0" || d.MTU() != 1400 || d.BatchSize() != 1 {
		t.Fatalf("Name %q MTU %d BatchSize %d", d.Name(), d.MTU(), d.BatchSize())
	}
	out, err := exec.Command("ip", "-n", ns.Name, "link", "show", "lw4o6t0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "mtu 1400") {
		t.Fatalf("ip link show: %v: %s", err, out)
	}
	devtest.PingThroughTUN(t, ns, d)

	ns.IP("link", "set", "lw4o6t0", "down")
	errc := make(chan error, 1)
	go func() { // packets the kernel sent before the link went down may come first
		for {
			if _, err := d.Read([][]byte{make([]byte, 1500)}, []int{0}, 0); err != nil {
				errc <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, tun.ErrClosed) {
			t.Fatalf("Read pending at Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
	if _, err := d.Write([][]byte{make([]byte, 20)}, 0); !errors.Is(err, tun.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if out, err := exec.Command("ip", "-n", ns.Name, "link", "show", "lw4o6t0").CombinedOutput(); err == nil {
		t.Fatalf("lw4o6t0 outlived Close: %s", out)
	}
}
