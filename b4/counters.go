package b4

import "github.com/lw4o6/lw4o6/stack/counter"

// Counter IDs; names follow the AFTR's (Snabb lwAFTR's) scheme.
const (
	cInIPv4  counter.ID = iota // from the LAN
	cInIPv6                    // from the access network
	cOutIPv4                   // to the LAN
	cOutIPv6                   // to the AFTR
	cToSelf                    // softwire packets for 192.0.0.2 (PCP)
	cDropMalformedIPv4
	cDropMalformedIPv6
	cDropNotProvisioned
	cDropNAT
	cDropNATInbound
	cDropWrongSourceIPv6
	cDropWrongDstIPv6
	cDropUnknownProtocolIPv6
	cDropTTLZero
	cInICMPv6Policy
	cDropICMPv6Spoofed
	cDropICMPv6Other
	cOutICMPv4
	cReprovision
	cDropTooBigDF
	cOutIPv6Frag
	cInIPv6Frag
	cDropFragmentIPv6
	cInLANPCP
	cOutLANPCP
	cDropLANPCP
	cPoolGrow         // port sets added under load (pool.go)
	cPoolShrink       // added sets given back idle
	cPoolRefused      // requests for one more set the AFTR refused
	cPoolOtherAddress // sets granted on another address, given back
	cDropICMPv6NotCurrent
	cInAnnounce
	cDropAnnounceSpoofed
	cDropAnnounceNoClient
	cGrantRefused
	cDropDstThisNetwork
	cDropDstLoopback
	cDropDstLinkLocal
	cDropDstSoftwire
	cDropDstMulticast
	cDropDstReserved
	cNATICMPLimited // NAT refusals left unanswered by the ICMP rate limit
)

var counterNames = []string{
	cInIPv4:                  "in-ipv4",
	cInIPv6:                  "in-ipv6",
	cOutIPv4:                 "out-ipv4",
	cOutIPv6:                 "out-ipv6",
	cToSelf:                  "in-to-self-ipv4",
	cDropMalformedIPv4:       "drop-malformed-ipv4",
	cDropMalformedIPv6:       "drop-malformed-ipv6",
	cDropNotProvisioned:      "drop-not-provisioned-ipv4",
	cDropNAT:                 "drop-nat-outbound-ipv4",
	cDropNATInbound:          "drop-nat-inbound-ipv4",
	cDropWrongSourceIPv6:     "drop-wrong-source-ipv6",
	cDropWrongDstIPv6:        "drop-wrong-dst-ipv6",
	cDropUnknownProtocolIPv6: "drop-unknown-protocol-ipv6",
	cDropTTLZero:             "drop-ttl-zero-ipv4",
	cInICMPv6Policy:          "in-icmpv6-no-binding",
	cDropICMPv6Spoofed:       "drop-icmpv6-not-from-aftr",
	cDropICMPv6Other:         "drop-icmpv6-other",
	cOutICMPv4:               "out-icmpv4",
	cReprovision:             "reprovision",
	cDropTooBigDF:            "drop-over-mtu-but-dont-fragment-ipv4",
	cOutIPv6Frag:             "out-ipv6-frag",
	cInIPv6Frag:              "in-ipv6-frag",
	cDropFragmentIPv6:        "drop-ipv6-frag-invalid-reassembly",
	cInLANPCP:                "in-lan-pcp-ipv4",
	cOutLANPCP:               "out-lan-pcp-ipv4",
	cDropLANPCP:              "drop-lan-pcp-ipv4",
	cPoolGrow:                "pool-grow",
	cPoolShrink:              "pool-shrink",
	cPoolRefused:             "pool-refused",
	cPoolOtherAddress:        "pool-drop-set-other-address",
	cDropICMPv6NotCurrent:    "drop-icmpv6-not-current-binding",
	cInAnnounce:              "in-pcp-announce",
	cDropAnnounceSpoofed:     "drop-pcp-announce-spoofed",
	cDropAnnounceNoClient:    "drop-pcp-announce-not-running",
	cGrantRefused:            "pcp-grant-refused",
	cDropDstThisNetwork:      "drop-dst-this-network-ipv4",
	cDropDstLoopback:         "drop-dst-loopback-ipv4",
	cDropDstLinkLocal:        "drop-dst-link-local-ipv4",
	cDropDstSoftwire:         "drop-dst-softwire-ipv4",
	cDropDstMulticast:        "drop-dst-multicast-ipv4",
	cDropDstReserved:         "drop-dst-reserved-ipv4",
	cNATICMPLimited:          "nat-refused-icmp-rate-limited",
}
