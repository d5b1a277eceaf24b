package aftr

import (
	"os"
	"strings"
	"testing"
)

// BenchmarkReloadStatic: reload a table of 2^17 softwires (writeSnabbTable's
// layout) whose last softwire moved to another B4: a re-parse, the
// difference and one change. The table is what an operator edits; the
// cost is the parse and the two snapshots.
//
//	go test -run=NONE -bench=ReloadStatic -benchtime=5x ./aftr/
func BenchmarkReloadStatic(b *testing.B) {
	const n = 1 << 17
	path := writeSnabbTable(b, n)
	a := loadSnabbTable(b, path, n)
	src, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	// Two files that differ in one softwire's B4, reloaded in turn.
	last := strings.LastIndex(string(src), "b4-ipv6 ")
	moved := []byte(string(src[:last]) + "b4-ipv6 2001:db8:ffff:" + string(src[last+len("b4-ipv6 2001:db8:"):]))
	paths := [2]string{path + ".moved", path}
	if err := os.WriteFile(paths[0], moved, 0o644); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		res, err := a.ReloadStatic(paths[i%2])
		if err != nil {
			b.Fatal(err)
		}
		if res.Changed != 1 || res.Unchanged != n-1 {
			b.Fatalf("reload %d: %+v", i, res)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/softwire")
}
