package aftr

import "github.com/lw4o6/lw4o6/stack/counter"

// Counter IDs, named as Snabb lwAFTR names its counters so that operators
// coming from it read them unchanged.
const (
	cInIPv4 counter.ID = iota
	cInIPv6
	cOutIPv4
	cOutIPv6
	cHairpinIPv4
	cInPCP
	cOutPCP
	cOutICMPv4
	cOutICMPv6
	cDropMalformedIPv4
	cDropMalformedIPv6
	cDropUnknownProtocolIPv6
	cDropWrongDstIPv6
	cDropNoSourceSoftwire
	cDropNoDestSoftwire
	cDropUnknownProtocolIPv4
	cDropFragmentIPv4
	cDropTTLZeroIPv4
	cDropHairpinDisabled
	cDropICMPRateLimit
	cDropToSelfIPv4
	cDropPCPMalformed
)

var counterNames = []string{
	cInIPv4:                  "in-ipv4",
	cInIPv6:                  "in-ipv6",
	cOutIPv4:                 "out-ipv4",
	cOutIPv6:                 "out-ipv6",
	cHairpinIPv4:             "hairpin-ipv4",
	cInPCP:                   "in-pcp",
	cOutPCP:                  "out-pcp",
	cOutICMPv4:               "out-icmpv4",
	cOutICMPv6:               "out-icmpv6",
	cDropMalformedIPv4:       "drop-malformed-ipv4",
	cDropMalformedIPv6:       "drop-malformed-ipv6",
	cDropUnknownProtocolIPv6: "drop-unknown-protocol-ipv6",
	cDropWrongDstIPv6:        "drop-wrong-dst-ipv6",
	cDropNoSourceSoftwire:    "drop-no-source-softwire-ipv4",
	cDropNoDestSoftwire:      "drop-no-dest-softwire-ipv4",
	cDropUnknownProtocolIPv4: "drop-unknown-protocol-ipv4",
	cDropFragmentIPv4:        "drop-ipv4-frag-unsupported",
	cDropTTLZeroIPv4:         "drop-ttl-zero-ipv4",
	cDropHairpinDisabled:     "drop-hairpin-disabled-ipv4",
	cDropICMPRateLimit:       "drop-over-rate-limit-icmp",
	cDropToSelfIPv4:          "drop-to-self-ipv4",
	cDropPCPMalformed:        "drop-malformed-pcp",
}
