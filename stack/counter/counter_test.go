package counter

import (
	"strings"
	"testing"
)

func TestSet(t *testing.T) {
	s := NewSet("in-ipv4", "drop-no-binding-ipv4")
	s.Count(1, 100)
	s.Count(1, 50)
	if s.Packets(1) != 2 || s.Bytes(1) != 150 || s.Packets(0) != 0 {
		t.Fatalf("counts %d %d %d", s.Packets(1), s.Bytes(1), s.Packets(0))
	}
	var b strings.Builder
	s.WriteTo(&b)
	if b.String() != "drop-no-binding-ipv4-bytes 150\ndrop-no-binding-ipv4-packets 2\n" {
		t.Fatalf("WriteTo = %q", b.String())
	}
}
