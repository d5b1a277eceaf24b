package snabbconf

import (
	"bytes"
	"fmt"
	"testing"
)

// bindingTable returns a configuration of n softwires (n <= 256*64) on
// 192.0.2.0/24 with 64 PSIDs per address.
func bindingTable(n int) []byte {
	var b bytes.Buffer
	b.WriteString("softwire-config {\n  binding-table {\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "    softwire {\n      ipv4 192.0.2.%d;\n      psid %d;\n      b4-ipv6 2001:db8:1::%x;\n      br-address 2001:db8::1;\n      port-set {\n        psid-length 6;\n      }\n    }\n", i/64, i%64, i+1)
	}
	b.WriteString("  }\n}\n")
	return b.Bytes()
}

func TestBindingTable(t *testing.T) {
	c, err := Parse(bytes.NewReader(bindingTable(256*64)), "bt.conf")
	if err != nil || len(c.Softwires) != 256*64 {
		t.Fatalf("%v", err)
	}
}

func BenchmarkParse(b *testing.B) {
	src := bindingTable(256 * 64)
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(bytes.NewReader(src), "bt.conf"); err != nil {
			b.Fatal(err)
		}
	}
}
