package packet

// Decapsulation of the traffic class (RFC 2983, RFC 6040).
//
// The DSCP (upper six bits) follows one of RFC 2983 §3's models: the pipe
// model keeps the inner header's DSCP, as a tunnel crossing a DS-domain
// boundary should (the access network's markings mean nothing on the
// Internet); the uniform model copies the outer DSCP in. The ECN field
// (lower two bits) is combined as RFC 6040 §4.2 says, so that congestion
// marked on the outer header (CE) reaches the endpoints and a packet whose
// endpoints do not speak ECN is never marked.

// ECN codepoints (RFC 3168 §5).
const (
	ECNNotECT uint8 = 0
	ECNECT1   uint8 = 1
	ECNECT0   uint8 = 2
	ECNCE     uint8 = 3
)

// DecapTOS returns the inner TOS octet after decapsulation of a packet
// whose outer traffic class is outerTC and inner TOS innerTOS: the DSCP
// copied from outside when uniform, else kept; the ECN field per RFC 6040
// §4.2. drop reports the one combination RFC 6040 §4.2 says to drop: an
// inner Not-ECT packet whose outer header says CE (its endpoints cannot be
// told of the congestion, so the packet is the signal).
func DecapTOS(outerTC, innerTOS uint8, uniform bool) (tos uint8, drop bool) {
	dscp := innerTOS &^ 3
	if uniform {
		dscp = outerTC &^ 3
	}
	in, out := innerTOS&3, outerTC&3
	ecn := in
	switch {
	case in == ECNNotECT:
		if out == ECNCE {
			return innerTOS, true
		}
	case out == ECNCE:
		ecn = ECNCE
	case in == ECNECT0 && out == ECNECT1:
		ecn = ECNECT1
	}
	return dscp | ecn, false
}
