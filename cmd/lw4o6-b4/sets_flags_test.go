package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// The pool flags (docs/port-sets.md) parse, and bad values are refused
// naming the flag, exit 2.
func TestPoolFlags(t *testing.T) {
	base := []string{"--aftr", "2001:db8::1", "--socks5", "127.0.0.1:1080"}
	o, err := parseFlags(append(append([]string{}, base...), "--max-sets", "3", "--grow-at", "0.5", "--shrink-after", "10s"), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.maxSets != 3 || o.growAt != 0.5 || o.shrinkAfter != 10*time.Second {
		t.Errorf("parsed %d %v %v", o.maxSets, o.growAt, o.shrinkAfter)
	}
	if o, _ := parseFlags(base, &bytes.Buffer{}); o.maxSets != 4 || o.growAt != 0.8 || o.shrinkAfter != 3*time.Minute {
		t.Errorf("defaults %d %v %v", o.maxSets, o.growAt, o.shrinkAfter)
	}
	for _, c := range [][2]string{
		{"--max-sets", "0"}, {"--max-sets", "17"}, {"--grow-at", "0"}, {"--grow-at", "1.5"},
		{"--grow-at", "NaN"}, {"--shrink-after", "10ms"},
	} {
		var out, errb bytes.Buffer
		if code := run(append(append([]string{}, base...), c[0], c[1]), &out, &errb); code != 2 || !strings.Contains(errb.String(), c[0]) {
			t.Errorf("%s %s: exit %d, stderr %q", c[0], c[1], code, errb.String())
		}
	}
}
