package aftr

import "testing"

// FuzzCompileFilter: any text compiles or fails cleanly, and a compiled
// filter judges any packet without panicking.
func FuzzCompileFilter(f *testing.F) {
	for _, s := range []string{"ip", "len < 0", "not (tcp and dst port 80) or src net 192.0.2.0/24", "ip6 && icmp6", "((", "port"} {
		f.Add(s, []byte{0x45, 0, 0, 20})
	}
	f.Fuzz(func(t *testing.T, src string, pkt []byte) {
		flt, err := CompileFilter(src, false)
		if err != nil {
			return
		}
		flt.Pass(pkt)
		_ = flt.String()
	})
}
