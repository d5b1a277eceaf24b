package aftr

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Loading a big Snabb binding table (issue 11 item 13): the time to parse
// and install a million softwires, and the memory it takes on the way
// compared with what the loaded table keeps.

// writeSnabbTable writes a softwire-config of n softwires in the layout of
// Snabb's generate-configuration (one leaf a line, as the conformance
// confs): 64 PSIDs (psid-length 6) per address of 198.18.0.0/15, one B4
// per softwire in 2001:db8::/32.
func writeSnabbTable(tb testing.TB, n int) string {
	tb.Helper()
	if n > 64<<17 {
		tb.Fatalf("%d softwires do not fit in 198.18.0.0/15", n)
	}
	p := filepath.Join(tb.TempDir(), "big.conf")
	f, err := os.Create(p)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("softwire-config {\n  binding-table {\n")
	for i := range n {
		a := 198<<24 | 18<<16 | i/64
		fmt.Fprintf(w, "    softwire {\n      ipv4 %d.%d.%d.%d;\n      psid %d;\n      b4-ipv6 2001:db8:%x:%x::1;\n      br-address 2001:db8::1;\n      port-set {\n        psid-length 6;\n      }\n    }\n",
			a>>24, a>>16&255, a>>8&255, a&255, i%64, 1+i>>16, i&0xffff)
	}
	w.WriteString(`  }
  external-interface { error-rate-limiting { packets 1000; } }
  internal-interface { error-rate-limiting { packets 1000; } }
  instance {
    device bench;
    queue {
      id 0;
      external-interface { ip 203.0.113.1; next-hop { mac 02:00:00:00:00:01; } }
      internal-interface { ip 2001:db8::1; next-hop { mac 02:00:00:00:00:02; } }
    }
  }
}
`)
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return p
}

// loadSnabbTable is what the daemon does with --bindings: LoadSnabb, then
// New installs what it loaded.
func loadSnabbTable(tb testing.TB, path string, n int) *AFTR {
	tb.Helper()
	cfg := DefaultConfig()
	cfg.Addr = tAFTR
	if err := LoadSnabb(path, &cfg); err != nil {
		tb.Fatal(err)
	}
	a, err := New(cfg, discard{}, discard{})
	if err != nil {
		tb.Fatal(err)
	}
	if got := a.table.Len(); got != n {
		tb.Fatalf("%d bindings installed, want %d", got, n)
	}
	return a
}

// heapSampler records the highest heap in use (HeapInuse: live and
// not-yet-swept objects plus the free space of their spans) seen every
// millisecond while it runs.
type heapSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	peak uint64
}

var heapInuseMetrics = []string{"/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes"}

func heapInuse() uint64 {
	s := make([]metrics.Sample, len(heapInuseMetrics))
	for i, n := range heapInuseMetrics {
		s[i].Name = n
	}
	metrics.Read(s)
	return s[0].Value.Uint64() + s[1].Value.Uint64()
}

func startHeapSampler() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), peak: heapInuse()}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				h.peak = max(h.peak, heapInuse())
			}
		}
	}()
	return h
}

func (h *heapSampler) Stop() uint64 {
	close(h.stop)
	h.wg.Wait()
	return max(h.peak, heapInuse())
}

const snabbMillion = 1 << 20 // 1 048 576 softwires: 16384 addresses × 64

// BenchmarkLoadSnabbMillion: parse and install 2^20 softwires from a
// 176 MB file. Reported: the time per load, the heap in use at its
// highest during the load (sampled every ms) and once the loaded AFTR is
// all that is left (after GC), and, from a fresh process doing one load
// (TestSnabbLoadMemoryChild), the peak and steady resident sizes and the
// live objects after GC.
//
//	go test -run=NONE -bench=LoadSnabbMillion -benchtime=3x ./aftr/
func BenchmarkLoadSnabbMillion(b *testing.B) {
	path := writeSnabbTable(b, snabbMillion)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fi.Size())
	runtime.GC()
	var peak, steady uint64
	for b.Loop() {
		runtime.GC()
		h := startHeapSampler()
		a := loadSnabbTable(b, path, snabbMillion)
		peak = max(peak, h.Stop())
		runtime.GC()
		steady = heapInuse()
		runtime.KeepAlive(a)
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(steady)/(1<<20), "steady-heap-MiB")
	b.ReportMetric(float64(peak)/float64(steady), "peak/steady")

	// Resident sizes, from a process that does nothing else.
	cmd := exec.Command(os.Args[0], "-test.run=^TestSnabbLoadMemoryChild$", "-test.v")
	cmd.Env = append(os.Environ(), "LW4O6_SNABB_MEM_CHILD="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("child: %v\n%s", err, out)
	}
	for _, f := range []string{"hwm-MiB", "steady-rss-MiB", "steady-objects-MiB", "load-s"} {
		v, ok := childFigure(out, f)
		if !ok {
			b.Fatalf("child did not report %s:\n%s", f, out)
		}
		b.ReportMetric(v, "child-"+f)
	}
}

func childFigure(out []byte, name string) (float64, bool) {
	for _, l := range bytes.Split(out, []byte("\n")) {
		f := strings.Fields(string(l))
		for i := 0; i+1 < len(f); i++ {
			if f[i] == name+":" {
				v, err := strconv.ParseFloat(f[i+1], 64)
				return v, err == nil
			}
		}
	}
	return 0, false
}

// procStatus returns a /proc/self/status size in MiB (VmHWM, VmRSS).
func procStatus(t testing.TB, field string) float64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb / 1024
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// TestSnabbLoadMemoryChild is BenchmarkLoadSnabbMillion's fresh process:
// it loads the file it is given once and prints the peak resident size
// (VmHWM) and the resident size once the loaded AFTR is all that is left.
func TestSnabbLoadMemoryChild(t *testing.T) {
	path := os.Getenv("LW4O6_SNABB_MEM_CHILD")
	if path == "" {
		t.Skip("the child process of BenchmarkLoadSnabbMillion")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Fatalf("no /proc/self/status: %v", err)
	}
	start := time.Now()
	a := loadSnabbTable(t, path, snabbMillion)
	load := time.Since(start)
	hwm := procStatus(t, "VmHWM")
	runtime.GC()
	debug.FreeOSMemory()
	rss := procStatus(t, "VmRSS")
	objs := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(objs)
	t.Logf("load-s: %.3f hwm-MiB: %.1f steady-rss-MiB: %.1f steady-heap-MiB: %.1f steady-objects-MiB: %.1f", load.Seconds(), hwm, rss, float64(heapInuse())/(1<<20), float64(objs[0].Value.Uint64())/(1<<20))
	runtime.KeepAlive(a)
}
