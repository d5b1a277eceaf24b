package main

import (
	"bytes"
	"strings"
	"testing"
)

// --pcp-rate, --pcp-rate-per-b4 and --pcp-burst-per-b4 reach the AFTR's
// PCP rate limits (aftr/pcplimit.go), the defaults those of
// aftr.DefaultConfig; a negative or non-finite value is refused, naming
// the flag.
func TestPCPRateFlags(t *testing.T) {
	base := []string{"--ipv6", "2001:db8::1", "--pool", "192.0.2.0/30", "--underlay", "udp", "--underlay-listen", "127.0.0.1:0"}
	for _, c := range []struct {
		args  []string
		rate  int
		perB4 float64
		burst int
	}{
		{nil, 20000, 2, 10},
		{[]string{"--pcp-rate", "0", "--pcp-rate-per-b4", "0"}, 0, 0, 10},
		{[]string{"--pcp-rate", "500", "--pcp-rate-per-b4", "0.5", "--pcp-burst-per-b4", "3"}, 500, 0.5, 3},
	} {
		args := append(append([]string{}, base...), c.args...)
		o, err := parseFlags(args, &bytes.Buffer{})
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		cfg, err := buildConfig(o)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.PCPRate != c.rate || cfg.PCPRatePerB4 != c.perB4 || cfg.PCPBurstPerB4 != c.burst {
			t.Errorf("%v: PCPRate %d PCPRatePerB4 %v PCPBurstPerB4 %d, want %d %v %d",
				c.args, cfg.PCPRate, cfg.PCPRatePerB4, cfg.PCPBurstPerB4, c.rate, c.perB4, c.burst)
		}
	}
	for _, bad := range [][]string{{"--pcp-rate", "-1"}, {"--pcp-rate-per-b4", "-2"}, {"--pcp-rate-per-b4", "NaN"}, {"--pcp-burst-per-b4", "-1"}} {
		var out, errb bytes.Buffer
		if code := run(append(append([]string{}, base...), bad...), &out, &errb); code != 2 || !strings.Contains(errb.String(), bad[0]) {
			t.Errorf("%v: exit %d, stderr %q", bad, code, errb.String())
		}
	}
}
