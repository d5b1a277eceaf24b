package packet

import "testing"

// RFC 6040 §4.2, Figure 4: the ECN field after decapsulation for every
// (inner, outer) pair; "drop" where the RFC says drop.
func TestDecapTOSRFC6040Table(t *testing.T) {
	const drop = 0xff
	names := []string{"Not-ECT", "ECT(1)", "ECT(0)", "CE"}
	// want[inner][outer], codepoints in RFC 3168 order 0..3.
	want := [4][4]uint8{
		ECNNotECT: {ECNNotECT, ECNNotECT, ECNNotECT, drop},
		ECNECT1:   {ECNECT1, ECNECT1, ECNECT1, ECNCE},
		ECNECT0:   {ECNECT0, ECNECT1, ECNECT0, ECNCE},
		ECNCE:     {ECNCE, ECNCE, ECNCE, ECNCE},
	}
	for in := range uint8(4) {
		for out := range uint8(4) {
			inner, outer := 0xb8|in, 0x20|out // EF inner, CS1 outer
			tos, dropped := DecapTOS(outer, inner, false)
			w := want[in][out]
			if w == drop {
				if !dropped {
					t.Errorf("inner %s outer %s: kept (%#x), want drop", names[in], names[out], tos)
				}
				continue
			}
			if dropped || tos != 0xb8|w {
				t.Errorf("inner %s outer %s: tos %#x drop %v, want %#x", names[in], names[out], tos, dropped, 0xb8|w)
			}
			// Uniform model: the outer DSCP, the same ECN.
			if u, _ := DecapTOS(outer, inner, true); u != 0x20|w {
				t.Errorf("uniform, inner %s outer %s: tos %#x, want %#x", names[in], names[out], u, 0x20|w)
			}
		}
	}
}
