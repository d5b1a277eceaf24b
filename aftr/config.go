package aftr

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"time"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/aftr/snabbconf"
	"github.com/lw4o6/lw4o6/stack/frag"
)

// Config configures an AFTR. Start from DefaultConfig: its zero value turns
// every optional behaviour off.
type Config struct {
	// Addr is the AFTR's IPv6 address: the softwire endpoint the B4s
	// provisioned by PCP tunnel to (the BR address of the pool's
	// bindings) and the source of what it sends them.
	Addr netip.Addr
	// Addrs are further IPv6 addresses of the AFTR. With the BR addresses
	// of the static bindings, they are softwire endpoints too; the AFTR
	// answers PCP and echo on each, and answers from the address a packet
	// was sent to.
	Addrs []netip.Addr
	// IPv4Addr is the AFTR's own public IPv4 address, the source of the
	// ICMPv4 errors it sends to the Internet and an address it answers
	// echo requests on. Unset: no ICMPv4 errors to the Internet.
	IPv4Addr netip.Addr
	// Pools are the IPv4 prefixes the PCP server hands out. None: PCP
	// answers NO_RESOURCES and only Static bindings exist.
	Pools []netip.Prefix
	// Static are operator bindings (RFC 7597 §5.1 port sets, per-binding
	// BR address), installed by New in the one table the PCP bindings
	// share. See ApplySnabb.
	Static []bindings.Binding
	// PortsPerB4 is the size of each B4's port set: a power of two.
	PortsPerB4 int
	// LifetimeMin and LifetimeMax bound the binding lifetimes granted
	// (RFC 6887 §15: 120 s and 24 h).
	LifetimeMin, LifetimeMax time.Duration
	// HopLimit is the hop limit of the IPv6 packets the AFTR encapsulates
	// or originates (ICMPv6 errors): RFC 2473 §6.3, the tunnel's own, 64 by
	// default. Snabb: 255.
	HopLimit uint8
	// FlowLabel is the outer flow label of encapsulated packets (RFC 2473
	// §6.5: 0 by default).
	FlowLabel uint32
	// AccessMTU is the largest IPv6 packet sent to the B4s: larger
	// softwire packets are fragmented after encapsulation (RFC 6333 §6.3,
	// RFC 2473 §7). InternetMTU is the largest IPv4 packet sent to the
	// Internet (RFC 791 §3.2 fragmentation). Default 1500 both.
	AccessMTU, InternetMTU int
	// Reassembly4 bounds the reassembly of IPv4 fragments from the
	// Internet, done before the port lookup (RFC 7597 §8.3.2, RFC 6346
	// §5.3.3); Reassembly6 that of IPv6 fragments from the B4s, done
	// before decapsulation (RFC 6333 §6.3, RFC 2473 §7). Zero fields take
	// frag's defaults (20 fragments, 1024 datagrams, 30 s); Now is the
	// AFTR's clock.
	Reassembly4, Reassembly6 frag.Config
	// FragmentIDs numbers the fragments the AFTR makes: the IPv6 Fragment
	// header's ID always, the IPv4 ID with NewIPv4FragmentIDs. nil:
	// frag.RandomIDs() (RFC 7739).
	FragmentIDs frag.IDs
	// NewIPv4FragmentIDs gives the IPv4 fragments the AFTR makes a new ID
	// from FragmentIDs instead of the datagram's own (RFC 791 §3.2 keeps
	// it; Snabb renumbers).
	NewIPv4FragmentIDs bool
	// ZeroReassembledIDAndFlags zeroes the ID and flags of a reassembled
	// IPv4 datagram (Snabb); off, they are the first fragment's, DF kept
	// (RFC 791).
	ZeroReassembledIDAndFlags bool
	// IgnoreIPv4HeaderChecksum lets IPv4 packets with a bad header
	// checksum through (Snabb checks none); off, they are dropped as RFC
	// 1812 §5.2.2 and RFC 1122 §3.2.1.2 require.
	IgnoreIPv4HeaderChecksum bool
	// DecapDecrementsTTL decrements the TTL of packets from B4s when they
	// are decapsulated, as a router forwarding them (RFC 1812 §5.3.1).
	// Off (Snabb), only encapsulation decrements: upstream packets keep
	// their TTL and a hairpinned one is decremented once, when it is
	// re-encapsulated.
	DecapDecrementsTTL bool
	// DecapTOS is what decapsulation does to the inner TOS octet of a
	// packet from a B4. The default, TOSPipe, keeps the inner DSCP
	// (RFC 2983 §3 pipe model: the access network's markings end at its
	// edge) and combines ECN per RFC 6040 §4.2; TOSUniform copies the
	// outer DSCP in (RFC 2983 uniform model, RFC 6333 §7.1's "vice
	// versa"), ECN likewise; TOSUntouched leaves the inner header as it
	// came (Snabb). PROTOCOL.md §8 item 8 said "copied both ways": that
	// blind copy could clear a CE mark or mark a Not-ECT packet (RFC
	// 6040 §4.2), so the default changed.
	DecapTOS TOSMode
	// TimeExceededQuotesDecrementedTTL makes ICMPv4 time exceeded quote
	// the datagram with its TTL already decremented to 0 (Snabb); off, as
	// received (RFC 1812 §4.3.2.3).
	TimeExceededQuotesDecrementedTTL bool
	// EchoByPort0 delivers echo requests from the Internet to the softwire
	// holding port 0 of the address, and checks echo replies from B4s
	// against port 0 (Snabb). Off, both use the identifier (RFC 7596 §8.1).
	EchoByPort0 bool
	// Hairpinning lets B4s reach each other through the AFTR
	// (RFC 7596 §6.2: MUST be supported, the policy configurable).
	Hairpinning bool
	// UnhairpinnedToInternet, with Hairpinning off, sends a B4's packet
	// to another B4's address to the Internet side like any other, for the
	// IPv4 network's policy to route back or not (Snabb); off, such
	// packets are dropped and never leave.
	UnhairpinnedToInternet bool
	// HairpinOwnICMPv4 sends the ICMPv4 errors the AFTR originates for a
	// B4 (about a packet that B4 sent) down the hairpin path, as packets
	// from the IPv4 side to a B4 address: re-encapsulated like any
	// hairpinned packet, so an encapsulation-time TTL decrement applies
	// (Snabb). Off, they go straight back into the softwire the invoking
	// packet came in, with the TTL they were made with: the AFTR
	// originated them and forwarded nothing (RFC 1812 §5.3.1).
	HairpinOwnICMPv4 bool
	// ICMPv6OnBindingFailure sends ICMPv6 type 1 code 5 to a B4 whose
	// packet matched no binding (RFC 7596 §6.2 MAY, configurable).
	ICMPv6OnBindingFailure bool
	// ICMPv4Errors lets the AFTR originate ICMPv4 errors at all: time
	// exceeded, fragmentation needed, and those translated from ICMPv6
	// errors about its softwire packets (RFC 2473 §8). Off, every one is
	// a counted drop (Snabb's generate-icmp-errors of the external side).
	ICMPv4Errors bool
	// ICMPv4OnNoBinding sends ICMPv4 type 3 code 1 for Internet packets
	// that match no binding (RFC 7596 §6.2 MAY, configurable). Needs
	// ICMPv4Errors and IPv4Addr.
	ICMPv4OnNoBinding bool
	// AllowIncomingICMPv4 accepts ICMPv4 from the Internet for the B4s
	// (RFC 7596 §8.1); off, it is a counted drop. Echo to IPv4Addr is
	// answered either way.
	AllowIncomingICMPv4 bool
	// AllowIncomingICMPv6 accepts ICMPv6 errors from the access network
	// about the AFTR's softwire packets, translated to ICMPv4 for the
	// Internet host that caused them (RFC 2473 §8.2); off, a counted
	// drop. Echo to the AFTR's addresses is answered either way.
	AllowIncomingICMPv6 bool
	// ICMPv4ErrorTTL is the TTL of the ICMPv4 errors the AFTR originates
	// (64; Snabb 255).
	ICMPv4ErrorTTL uint8
	// ICMPv4ErrorMaxLen and ICMPv6ErrorMaxLen bound the ICMP errors the
	// AFTR originates (RFC 1812 §4.3.2.3: 576; RFC 4443 §2.4(c): 1280).
	ICMPv4ErrorMaxLen, ICMPv6ErrorMaxLen int
	// ICMPRate is the most ICMP errors sent per second of each family
	// (RFC 7596 §9 and RFC 4443 §2.4(f): MUST be rate-limited);
	// ICMPv4Rate and ICMPv6Rate, when > 0, override it per family.
	ICMPRate, ICMPv4Rate, ICMPv6Rate int
	// ICMPv6RatePerPrefix is the most ICMPv6 errors sent per second to
	// the B4s of one /64, within the family's rate, so that a flood from
	// one source does not starve every other B4's 1/5 (issue 11 item 5).
	// 0: a tenth of the ICMPv6 rate (at least 1); negative: no per-prefix
	// limit.
	ICMPv6RatePerPrefix int
	// PCPRate caps the PCP requests from B4s the server handles per
	// second, all B4s together, with a second's worth in store;
	// PCPRatePerB4 those from the B4s of one /64, with PCPBurstPerB4 in
	// store (0: 5 s worth). A request over either is dropped unanswered
	// and counted; the B4 retransmits (RFC 6887 §8.1.1, §18.1;
	// pcplimit.go). 0: no such limit. Provisioning systems are exempt.
	PCPRate       int
	PCPRatePerB4  float64
	PCPBurstPerB4 int
	// Filters are packet filters on both sides (Snabb's ingress and
	// egress filters); nil filters pass everything.
	Filters Filters
	// Provisioners are the prefixes of the provisioning systems allowed
	// to manage a named B4's binding with PCP THIRD_PARTY over plain UDP to
	// the AFTR (PROTOCOL.md §8 item 4, provision.go); PCP from anyone else
	// that way gets no answer (RFC 6887 §13.1: the network between them
	// must be trusted), and THIRD_PARTY inside a softwire is UNSUPP_OPTION.
	Provisioners []netip.Prefix
	// Announce sends unsolicited PCP ANNOUNCEs after a start without
	// restored state or AnnounceStateLoss (RFC 6887 §14.1.3, announce.go):
	// into the softwire of each B4 the AFTR hears from without a binding,
	// and to AnnounceGroup.
	Announce bool
	// AnnounceGroup is an IPv6 multicast group on the access network
	// (e.g. ff02::1) the ANNOUNCEs are also sent to, encapsulated; the zero
	// Addr sends none.
	AnnounceGroup netip.Addr
	// QuotaPerPrefix caps the PCP bindings of all B4 addresses within one
	// QuotaPrefixLen-bit IPv6 prefix (a subscriber's delegation), answered
	// USER_EX_QUOTA past it (RFC 6887 §11.3 RECOMMENDS per-subscriber
	// quotas). 0: no quota.
	QuotaPerPrefix int
	QuotaPrefixLen int
	// MaxSetsPerB4 caps the port sets one B4 holds through PCP: its first
	// and the additional ones it asks for under load (docs/port-sets.md);
	// one more is refused with USER_EX_QUOTA and counted. 1 keeps one set
	// per B4 (PROTOCOL.md §8 item 2).
	MaxSetsPerB4 int
	// ForwardToLoopback forwards B4 packets addressed to 127.0.0.0/8 to
	// the Internet side, which RFC 1812 §5.3.7 says a router SHOULD NOT
	// do. Only for a lab whose Internet side is the host's own loopback
	// (the daemon's --egress-allow-loopback).
	ForwardToLoopback bool
	// StateDir is the directory of the binding journal: every change of
	// a PCP binding is made durable there before its answer leaves, and New
	// replays it, so a restart loses no binding and the PCP Epoch continues
	// (RFC 6887 §8.5). "": no journal (a restart loses every PCP binding).
	StateDir string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the AFTR's log; nil discards it.
	Logger *slog.Logger

	// snabb is the binding table LoadSnabb filled, which New adopts.
	snabb *snabbTable
	// snabbSettings is the last file LoadSnabb read, but for its
	// softwires: ReloadStatic compares a new file's settings with it.
	snabbSettings *snabbconf.Config
}

// DefaultConfig returns the RFC-sound defaults. Addr, and Pools or Static,
// must still be set.
func DefaultConfig() Config {
	return Config{
		PortsPerB4:             2048,
		MaxSetsPerB4:           4,
		LifetimeMin:            120 * time.Second,
		LifetimeMax:            24 * time.Hour,
		HopLimit:               64,
		AccessMTU:              1500,
		InternetMTU:            1500,
		DecapDecrementsTTL:     true,
		Hairpinning:            true,
		ICMPv6OnBindingFailure: true,
		ICMPv4Errors:           true,
		AllowIncomingICMPv4:    true,
		AllowIncomingICMPv6:    true,
		ICMPv4ErrorTTL:         64,
		ICMPv4ErrorMaxLen:      576,
		ICMPv6ErrorMaxLen:      1280,
		ICMPRate:               100,
		// A B4's first MAP and its retransmissions, its extra port sets
		// (MaxSetsPerB4) and the re-requests an ANNOUNCE draws fit 10 at
		// once; renewals come at half a lifetime. 20 000/s lets every B4
		// of a large AFTR re-request within a second after an ANNOUNCE.
		PCPRate:       20000,
		PCPRatePerB4:  2,
		PCPBurstPerB4: 10,
		Announce:      true,
	}
}

// TOSMode says what decapsulation does to the inner TOS (Config.DecapTOS).
type TOSMode uint8

// TOS modes.
const (
	TOSPipe      TOSMode = iota // inner DSCP kept, ECN per RFC 6040
	TOSUniform                  // outer DSCP copied, ECN per RFC 6040
	TOSUntouched                // inner TOS as received (Snabb)
)

// ErrConfig wraps every configuration error.
var ErrConfig = errors.New("aftr: bad configuration")

func unicast6(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && !a.IsUnspecified() && !a.IsMulticast()
}

func (c *Config) validate() error {
	if !unicast6(c.Addr) {
		return fmt.Errorf("%w: Addr %v is not a unicast IPv6 address", ErrConfig, c.Addr)
	}
	for _, a := range c.Addrs {
		if !unicast6(a) {
			return fmt.Errorf("%w: Addrs: %v is not a unicast IPv6 address", ErrConfig, a)
		}
	}
	if len(c.Pools) == 0 && len(c.Static) == 0 && c.snabb.len() == 0 {
		return fmt.Errorf("%w: no IPv4 pool and no static binding", ErrConfig)
	}
	for i, p := range c.Pools {
		if !p.IsValid() || !p.Addr().Is4() {
			return fmt.Errorf("%w: pool %v is not an IPv4 prefix", ErrConfig, p)
		}
		if why := unusablePool(p); why != "" {
			return fmt.Errorf("%w: pool %v %s", ErrConfig, p, why)
		}
		for _, q := range c.Pools[:i] {
			if p.Overlaps(q) {
				return fmt.Errorf("%w: pool %v overlaps pool %v (given twice?)", ErrConfig, p, q)
			}
		}
	}
	for _, p := range c.Provisioners {
		if !p.IsValid() {
			return fmt.Errorf("%w: provisioner prefix %v", ErrConfig, p)
		}
	}
	if g := c.AnnounceGroup; g.IsValid() && (!g.Is6() || g.Is4In6() || !g.IsMulticast()) {
		return fmt.Errorf("%w: AnnounceGroup %v is not an IPv6 multicast group", ErrConfig, g)
	}
	if c.IPv4Addr.IsValid() && !c.IPv4Addr.Is4() {
		return fmt.Errorf("%w: IPv4Addr %v is not IPv4", ErrConfig, c.IPv4Addr)
	}
	for _, p := range c.Pools {
		if c.IPv4Addr.IsValid() && p.Contains(c.IPv4Addr) {
			return fmt.Errorf("%w: the AFTR's own IPv4 address %v is inside pool %v, whose ports belong to B4s", ErrConfig, c.IPv4Addr, p)
		}
	}
	if c.PCPRate < 0 || c.PCPBurstPerB4 < 0 || !(c.PCPRatePerB4 >= 0 && c.PCPRatePerB4 <= math.MaxInt32) {
		return fmt.Errorf("%w: PCP rate %d, per B4 %v burst %d: want 0 (off) or more", ErrConfig, c.PCPRate, c.PCPRatePerB4, c.PCPBurstPerB4)
	}
	if c.MaxSetsPerB4 < 0 || c.MaxSetsPerB4 > bindings.MaxSet {
		return fmt.Errorf("%w: MaxSetsPerB4 %d is not in [0, %d]", ErrConfig, c.MaxSetsPerB4, bindings.MaxSet)
	}
	if c.HopLimit == 0 {
		return fmt.Errorf("%w: HopLimit 0", ErrConfig)
	}
	if c.FlowLabel >= 1<<20 {
		return fmt.Errorf("%w: FlowLabel %#x is over 20 bits", ErrConfig, c.FlowLabel)
	}
	if c.LifetimeMin <= 0 || c.LifetimeMax < c.LifetimeMin {
		return fmt.Errorf("%w: lifetimes min %v max %v", ErrConfig, c.LifetimeMin, c.LifetimeMax)
	}
	// RFC 8200 §5: every IPv6 link carries 1280; RFC 791: every IPv4
	// module 68 (and fragments need 8 octets of data beside 60 of header).
	if c.AccessMTU < 1280 || c.AccessMTU > 65535 {
		return fmt.Errorf("%w: AccessMTU %d is not in [1280, 65535]", ErrConfig, c.AccessMTU)
	}
	if c.InternetMTU < 68 || c.InternetMTU > 65535 {
		return fmt.Errorf("%w: InternetMTU %d is not in [68, 65535]", ErrConfig, c.InternetMTU)
	}
	if c.ICMPv4ErrorTTL == 0 {
		return fmt.Errorf("%w: ICMPv4ErrorTTL 0", ErrConfig)
	}
	// RFC 1812 §4.3.2.3 and RFC 4443 §2.4(c) are upper bounds; below,
	// room for the headers and the quoted header.
	if c.ICMPv4ErrorMaxLen < 56 || c.ICMPv4ErrorMaxLen > 576 {
		return fmt.Errorf("%w: ICMPv4ErrorMaxLen %d is not in [56, 576]", ErrConfig, c.ICMPv4ErrorMaxLen)
	}
	if c.ICMPv6ErrorMaxLen < 88 || c.ICMPv6ErrorMaxLen > 1280 {
		return fmt.Errorf("%w: ICMPv6ErrorMaxLen %d is not in [88, 1280]", ErrConfig, c.ICMPv6ErrorMaxLen)
	}
	return nil
}

// specialPools are the IPv4 ranges no B4 can be given (RFC 6890 and the
// RFCs it lists): traffic to them never crosses the Internet, or they are
// the softwire's own addresses.
var specialPools = []struct {
	p   netip.Prefix
	why string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), `overlaps 0.0.0.0/8 ("this network", RFC 1122 §3.2.1.3)`},
	{netip.MustParsePrefix("127.0.0.0/8"), "overlaps 127.0.0.0/8 (loopback, RFC 1122 §3.2.1.3)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "overlaps 169.254.0.0/16 (link-local, RFC 3927)"},
	{netip.MustParsePrefix("192.0.0.0/29"), "overlaps 192.0.0.0/29 (the softwire's own addresses, RFC 6333 §5.7)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "overlaps 224.0.0.0/4 (multicast, RFC 5771)"},
	{netip.MustParsePrefix("240.0.0.0/4"), "overlaps 240.0.0.0/4 (reserved, and 255.255.255.255 broadcast; RFC 1112 §4, RFC 919)"},
}

// unusablePool says why p cannot be a pool, or "".
func unusablePool(p netip.Prefix) string {
	for _, s := range specialPools {
		if p.Overlaps(s.p) {
			return s.why
		}
	}
	return ""
}
