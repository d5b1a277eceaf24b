package aftr

import "github.com/lw4o6/lw4o6/stack/counter"

// Counter IDs, named in Snabb lwAFTR's scheme
// {in,out,drop,hairpin}-<reason>-<proto>-{bytes,packets}, and with Snabb's
// own names where the reason is one Snabb counts, so that operators coming
// from it read them unchanged. Every drop reason has its counter. Counters
// returns them, with the reassemblers' table counters.
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

	// Wrong side, malformed, not for us.
	cDropMisplacedNotIPv4
	cDropMisplacedNotIPv6
	cDropMalformedIPv4
	cDropMalformedIPv6
	cDropUnknownProtocolIPv6
	cDropUnknownProtocolIPv4
	cDropWrongDstIPv6
	cDropToSelfIPv4
	cDropPCPMalformed
	cDropInByFilterIPv4
	cDropInByFilterIPv6
	cDropOutByFilterIPv4
	cDropOutByFilterIPv6

	// The binding table.
	cDropNoSourceSoftwire
	cDropNoDestSoftwire
	cDropHairpinDisabled
	cDropTTLZeroIPv4
	cDropECNCEOnNotECT

	// Fragments.
	cInIPv4FragNeedsReassembly
	cInIPv4FragReassembled
	cDropIPv4FragInvalid
	cDropIPv4FragTooMany
	cDropIPv4FragTableFull
	cInIPv6FragNeedsReassembly
	cInIPv6FragReassembled
	cDropIPv6FragInvalid
	cDropIPv6FragTooMany
	cDropIPv6FragTableFull
	cDropFragmentIPv4 // inner IPv4 fragments from B4s: not reassembled
	cOutIPv4Frag
	cOutIPv6Frag
	cDropOverMTUDontFragmentIPv4
	cDropFragFailedIPv4
	cDropFragFailedIPv6

	// ICMP in.
	cDropInByPolicyICMPv4
	cDropInByPolicyICMPv6
	cDropBadChecksumICMPv4
	cDropInByRFC7596ICMPv4
	cDropTooBigTypeButNotCodeICMPv6
	cDropOverTimeButNotHopLimitICMPv6
	cDropUnknownProtocolICMPv6
	cDropNotFromSoftwireICMPv6
	cDropBadChecksumICMPv6

	// ICMP out.
	cDropOutByPolicyICMPv4
	cDropOutByPolicyICMPv6
	cDropOverRateLimitICMPv4
	cDropOverRateLimitICMPv6
	cOutICMPv4Echo
	cOutICMPv6Echo

	cDropMartianDstIPv4 // from a B4 to a special-purpose address (martianDst)
	cDropMartianSrcIPv4 // from the Internet, from a special-purpose or a B4 address (martianSrc)

	// PCP: who may ask (pcpserver.go, provision.go).
	cDropPCPNotFromB4           // inner source not 192.0.0.2 (PROTOCOL.md §8 item 3)
	cDropThirdPartyFromSoftwire // THIRD_PARTY inside a softwire (one B4 naming another)
	cDropPCPUnauthorized        // PCP over plain IPv6 from no provisioning system
	cInPCPProvision
	cOutPCPProvision

	// ANNOUNCE after state loss (announce.go).
	cOutAnnounceUnicast
	cOutAnnounceMulticast
	cDropAnnounceTableFull
	cDropAnnounceOverRate

	cDropOverSourceRateLimitICMPv6 // one source prefix over its share (icmp.go)

	cDropPCPUnjournaled // a PCP answer withheld: its change could not be made durable

	cPCPRefusedSetLimit // MAPs for a set past MaxSetsPerB4 (docs/port-sets.md)

	// PCP request rate limits (pcplimit.go).
	cDropPCPOverRateLimitB4     // over its /64's bucket
	cDropPCPOverRateLimitGlobal // over the bucket of all B4s
	cPCPRateTableFull           // no room for its /64's bucket: global limit only
)

var counterNames = []string{
	cInIPv4:      "in-ipv4",
	cInIPv6:      "in-ipv6",
	cOutIPv4:     "out-ipv4",
	cOutIPv6:     "out-ipv6",
	cHairpinIPv4: "hairpin-ipv4",
	cInPCP:       "in-pcp",
	cOutPCP:      "out-pcp",
	cOutICMPv4:   "out-icmpv4",
	cOutICMPv6:   "out-icmpv6",

	cDropMisplacedNotIPv4:    "drop-misplaced-not-ipv4",
	cDropMisplacedNotIPv6:    "drop-misplaced-not-ipv6",
	cDropMalformedIPv4:       "drop-malformed-ipv4",
	cDropMalformedIPv6:       "drop-malformed-ipv6",
	cDropUnknownProtocolIPv6: "drop-unknown-protocol-ipv6",
	cDropUnknownProtocolIPv4: "drop-unknown-protocol-ipv4",
	cDropWrongDstIPv6:        "drop-wrong-dst-ipv6",
	cDropToSelfIPv4:          "drop-to-self-ipv4",
	cDropPCPMalformed:        "drop-malformed-pcp",
	cDropInByFilterIPv4:      "drop-in-by-filter-ipv4",
	cDropInByFilterIPv6:      "drop-in-by-filter-ipv6",
	cDropOutByFilterIPv4:     "drop-out-by-filter-ipv4",
	cDropOutByFilterIPv6:     "drop-out-by-filter-ipv6",

	cDropNoSourceSoftwire: "drop-no-source-softwire-ipv6",
	cDropECNCEOnNotECT:    "drop-ecn-ce-on-not-ect-ipv6",
	cDropNoDestSoftwire:   "drop-no-dest-softwire-ipv4",
	cDropHairpinDisabled:  "drop-hairpin-disabled-ipv4",
	cDropTTLZeroIPv4:      "drop-ttl-zero-ipv4",

	cInIPv4FragNeedsReassembly:   "in-ipv4-frag-needs-reassembly",
	cInIPv4FragReassembled:       "in-ipv4-frag-reassembled",
	cDropIPv4FragInvalid:         "drop-ipv4-frag-invalid-reassembly",
	cDropIPv4FragTooMany:         "drop-ipv4-frag-too-many-fragments",
	cDropIPv4FragTableFull:       "drop-ipv4-frag-table-full",
	cInIPv6FragNeedsReassembly:   "in-ipv6-frag-needs-reassembly",
	cInIPv6FragReassembled:       "in-ipv6-frag-reassembled",
	cDropIPv6FragInvalid:         "drop-ipv6-frag-invalid-reassembly",
	cDropIPv6FragTooMany:         "drop-ipv6-frag-too-many-fragments",
	cDropIPv6FragTableFull:       "drop-ipv6-frag-table-full",
	cDropFragmentIPv4:            "drop-ipv4-frag-unsupported",
	cOutIPv4Frag:                 "out-ipv4-frag",
	cOutIPv6Frag:                 "out-ipv6-frag",
	cDropOverMTUDontFragmentIPv4: "drop-over-mtu-but-dont-fragment-ipv4",
	cDropFragFailedIPv4:          "drop-fragmentation-failed-ipv4",
	cDropFragFailedIPv6:          "drop-fragmentation-failed-ipv6",

	cDropInByPolicyICMPv4:             "drop-in-by-policy-icmpv4",
	cDropInByPolicyICMPv6:             "drop-in-by-policy-icmpv6",
	cDropBadChecksumICMPv4:            "drop-bad-checksum-icmpv4",
	cDropInByRFC7596ICMPv4:            "drop-in-by-rfc7596-icmpv4",
	cDropTooBigTypeButNotCodeICMPv6:   "drop-too-big-type-but-not-code-icmpv6",
	cDropOverTimeButNotHopLimitICMPv6: "drop-over-time-but-not-hop-limit-icmpv6",
	cDropUnknownProtocolICMPv6:        "drop-unknown-protocol-icmpv6",
	cDropNotFromSoftwireICMPv6:        "drop-not-about-softwire-icmpv6",
	cDropBadChecksumICMPv6:            "drop-bad-checksum-icmpv6",

	cDropOutByPolicyICMPv4:   "drop-out-by-policy-icmpv4",
	cDropOutByPolicyICMPv6:   "drop-out-by-policy-icmpv6",
	cDropOverRateLimitICMPv4: "drop-over-rate-limit-icmpv4",
	cDropOverRateLimitICMPv6: "drop-over-rate-limit-icmpv6",
	cOutICMPv4Echo:           "out-icmpv4-echo-reply",
	cOutICMPv6Echo:           "out-icmpv6-echo-reply",

	cDropMartianDstIPv4: "drop-martian-dst-ipv4",
	cDropMartianSrcIPv4: "drop-martian-src-ipv4",

	cDropPCPNotFromB4:           "drop-pcp-not-from-b4-ipv4",
	cDropThirdPartyFromSoftwire: "drop-pcp-third-party-from-softwire",
	cDropPCPUnauthorized:        "drop-pcp-unauthorized-ipv6",
	cInPCPProvision:             "in-pcp-provision",
	cOutPCPProvision:            "out-pcp-provision",

	cOutAnnounceUnicast:    "out-pcp-announce-unicast",
	cOutAnnounceMulticast:  "out-pcp-announce-multicast",
	cDropAnnounceTableFull: "drop-pcp-announce-table-full",
	cDropAnnounceOverRate:  "drop-pcp-announce-over-rate-limit",

	cDropOverSourceRateLimitICMPv6: "drop-over-source-rate-limit-icmpv6",

	cDropPCPUnjournaled: "drop-unjournaled-pcp",

	cPCPRefusedSetLimit: "pcp-refused-set-limit",

	cDropPCPOverRateLimitB4:     "drop-pcp-over-rate-limit-b4",
	cDropPCPOverRateLimitGlobal: "drop-pcp-over-rate-limit-global",
	cPCPRateTableFull:           "pcp-rate-limit-table-full",
}
