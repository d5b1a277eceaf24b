package main

import (
	"bytes"
	"strings"
	"testing"
)

// --max-sets-per-b4 reaches the AFTR's MaxSetsPerB4 (docs/port-sets.md);
// a value outside 1-1023 is refused, naming the flag.
func TestMaxSetsPerB4Flag(t *testing.T) {
	base := []string{"--ipv6", "2001:db8::1", "--pool", "192.0.2.0/30", "--underlay", "udp", "--underlay-listen", "127.0.0.1:0"}
	for _, c := range []struct {
		arg  string
		want int
	}{{"", 4}, {"1", 1}, {"9", 9}} {
		args := base
		if c.arg != "" {
			args = append(append([]string{}, base...), "--max-sets-per-b4", c.arg)
		}
		o, err := parseFlags(args, &bytes.Buffer{})
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		cfg, err := buildConfig(o)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.MaxSetsPerB4 != c.want {
			t.Errorf("--max-sets-per-b4 %q: MaxSetsPerB4 %d, want %d", c.arg, cfg.MaxSetsPerB4, c.want)
		}
	}
	for _, bad := range []string{"0", "-1", "1024"} {
		var out, errb bytes.Buffer
		if code := run(append(append([]string{}, base...), "--max-sets-per-b4", bad), &out, &errb); code != 2 || !strings.Contains(errb.String(), "--max-sets-per-b4") {
			t.Errorf("--max-sets-per-b4 %s: exit %d, stderr %q", bad, code, errb.String())
		}
	}
}
