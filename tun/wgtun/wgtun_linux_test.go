package wgtun

import (
	"errors"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lw4o6/lw4o6/internal/testenv"
	"github.com/lw4o6/lw4o6/tun"
	"github.com/lw4o6/lw4o6/tun/internal/devtest"
)

func TestTUNInNetns(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  []Option
		batch int
	}{
		{"offload", nil, 128},
		{"plain", []Option{WithoutOffload()}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			devtest.LeakCheck(t)
			ns := devtest.NewNetns(t)
			testenv.RequireFile(t, "/dev/net/tun", "/dev/net/tun")
			var d *Device
			if err := ns.Do(func() (err error) { d, err = Open("lw4o6t0", 1400, tc.opts...); return err }); err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer d.Close()
			if d.Name() != "lw4o6t0" || d.MTU() != 1400 || d.BatchSize() != tc.batch {
				t.Fatalf("Name %q MTU %d BatchSize %d", d.Name(), d.MTU(), d.BatchSize())
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
			if _, err := d.Read([][]byte{make([]byte, 1500)}, []int{0}, 0); !errors.Is(err, tun.ErrClosed) {
				t.Fatalf("Read after Close: %v", err)
			}
			if _, err := d.Write([][]byte{make([]byte, 20)}, 0); !errors.Is(err, tun.ErrClosed) {
				t.Fatalf("Write after Close: %v", err)
			}
			if out, err := exec.Command("ip", "-n", ns.Name, "link", "show", "lw4o6t0").CombinedOutput(); err == nil {
				t.Fatalf("lw4o6t0 outlived Close: %s", out)
			}
		})
	}
}

// A UDP socket with UDP_SEGMENT hands the TUN one 64-segment super-packet
// (with USO, kernel ≥ 6.2); Read must return every segment, whatever the
// caller's batch length and offset.
func TestUDPSegmentsSplit(t *testing.T) {
	const segs, segSize = 64, 100
	for _, tc := range []struct{ batch, offset int }{{128, tun.Headroom}, {1, 0}, {10, 20}} {
		t.Run(fmt.Sprintf("batch%d-offset%d", tc.batch, tc.offset), func(t *testing.T) {
			devtest.LeakCheck(t)
			ns := devtest.NewNetns(t)
			var d *Device
			var fd int
			if err := ns.Do(func() (err error) {
				if d, err = Open("lw4o6t0", 1400); err != nil {
					return err
				}
				fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			defer unix.Close(fd)
			ns.IP("addr", "add", "192.0.2.1/24", "dev", "lw4o6t0")
			ns.IP("link", "set", "lw4o6t0", "up")
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_SEGMENT, segSize); err != nil {
				t.Skipf("UDP_SEGMENT: %v", err)
			}
			payload := make([]byte, segs*segSize)
			for i := range payload {
				payload[i] = byte(i / segSize)
			}
			if err := unix.Sendto(fd, payload, 0, &unix.SockaddrInet4{Addr: [4]byte{192, 0, 2, 2}, Port: 9}); err != nil {
				t.Fatal(err)
			}
			seen := make([]bool, segs)
			deadline := time.AfterFunc(5*time.Second, func() { d.Close() })
			defer deadline.Stop()
			bufs := make([][]byte, tc.batch)
			for i := range bufs {
				bufs[i] = make([]byte, tc.offset+1500)
			}
			sizes := make([]int, tc.batch)
			most := 0
			for got := 0; got < segs; {
				n, err := d.Read(bufs, sizes, tc.offset)
				if err != nil {
					t.Fatalf("after %d segments: %v", got, err)
				}
				most = max(most, n)
				for i := range n {
					p := bufs[i][tc.offset : tc.offset+sizes[i]]
					if len(p) != 28+segSize || p[9] != unix.IPPROTO_UDP || p[23] != 9 {
						continue // IPv6 chatter
					}
					if k := p[28]; !seen[k] {
						seen[k] = true
						got++
					}
				}
			}
			t.Logf("at most %d packets per Read", most)
		})
	}
}
