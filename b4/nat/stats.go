package nat

import "sync/atomic"

// reason numbers a drop; every sentinel error below carries one, and Stats
// has one counter per reason and direction.
type reason uint8

const (
	rNoExternal reason = iota
	rNotExternal
	rPortsExhausted
	rTooManySessions
	rNoMapping
	rFiltered
	rMalformed
	rChecksum
	rFragment
	rUnsupported
	rHostQuota
	nReasons
)

// dropError is the type of the sentinels: a packet the table refused, for a
// counted reason. They are never wrapped on the packet path, so a drop costs
// no allocation; compare with == or errors.Is.
type dropError struct {
	r   reason
	msg string
}

func (e *dropError) Error() string { return e.msg }

// Sentinel errors. Outbound and Inbound return exactly these values; each
// one bumps the counter of the same name in Stats.
var (
	// ErrNoExternal: no public address and port set is provisioned
	// (before SetExternal, after Clear).
	ErrNoExternal error = &dropError{rNoExternal, "nat: no external address provisioned"}
	// ErrNotExternal: an inbound packet is not addressed to the public
	// address (RFC 7596 §5.1: the lwB4 MUST drop it).
	ErrNotExternal error = &dropError{rNotExternal, "nat: destination is not the external address"}
	// ErrPortsExhausted: a new mapping is needed and every port of the set
	// is in use for the protocol (RFC 5508 REQ-8, RFC 6888 REQ-11a: drop).
	ErrPortsExhausted error = &dropError{rPortsExhausted, "nat: port set exhausted"}
	// ErrTooManySessions: a new session would exceed Config.MaxSessions.
	ErrTooManySessions error = &dropError{rTooManySessions, "nat: too many sessions"}
	// ErrNoMapping: an inbound packet (or an ICMP error's embedded packet)
	// matches no live mapping or session.
	ErrNoMapping error = &dropError{rNoMapping, "nat: no mapping"}
	// ErrFiltered: the mapping exists but the filtering rule refuses the
	// remote endpoint (RFC 4787 §5).
	ErrFiltered error = &dropError{rFiltered, "nat: filtered"}
	// ErrMalformed: bad IPv4 header (version, IHL, total length) or a
	// truncated transport header, outer or embedded.
	ErrMalformed error = &dropError{rMalformed, "nat: malformed packet"}
	// ErrChecksum: the IPv4 header checksum, an ICMP checksum or the
	// checksum of the IPv4 header embedded in an ICMP error is wrong
	// (RFC 5508 REQ-3: silently drop).
	ErrChecksum error = &dropError{rChecksum, "nat: bad checksum"}
	// ErrFragment: a non-first IPv4 fragment (offset ≠ 0), which carries no
	// ports and cannot be translated without reassembly, or a fragmented
	// ICMP error.
	ErrFragment error = &dropError{rFragment, "nat: non-first fragment"}
	// ErrUnsupported: a protocol other than TCP, UDP and ICMP, or an ICMP
	// type the NAT does not translate (RFC 5508 REQ-10; inbound echo
	// requests, RFC 6346 §5.3.2).
	ErrUnsupported error = &dropError{rUnsupported, "nat: unsupported protocol or ICMP type"}
	// ErrHostQuota: a new mapping or session would take the LAN host
	// past its per-host quota (Config.HostPorts, HostSessions; RFC 6888
	// REQ-4, REQ-5, REQ-11a: drop). Inbound, the host is the one the
	// packet is for.
	ErrHostQuota error = &dropError{rHostQuota, "nat: per-host quota exceeded"}
)

// Drops counts dropped packets of one direction by reason; the field names
// follow the sentinel errors.
type Drops struct {
	NoExternal      uint64
	NotExternal     uint64
	PortsExhausted  uint64
	TooManySessions uint64
	NoMapping       uint64
	Filtered        uint64
	Malformed       uint64
	Checksum        uint64
	Fragment        uint64
	Unsupported     uint64
	HostQuota       uint64
}

// Total is the sum of all drop counters.
func (d Drops) Total() uint64 {
	return d.NoExternal + d.NotExternal + d.PortsExhausted + d.TooManySessions + d.NoMapping +
		d.Filtered + d.Malformed + d.Checksum + d.Fragment + d.Unsupported + d.HostQuota
}

// Stats is a snapshot of the table's counters and gauges.
type Stats struct {
	// TranslatedOut counts packets Outbound translated (LAN → Internet,
	// hairpinned ones included); TranslatedIn those Inbound translated.
	TranslatedOut, TranslatedIn uint64
	// Hairpinned counts Outbound packets that were addressed to the
	// public address and went back to a LAN host (RFC 4787 REQ-9).
	Hairpinned uint64
	DropOut    Drops
	DropIn     Drops

	// Gauges.
	TCPSessions, UDPSessions, ICMPSessions int
	Mappings                               int // TCP, UDP and ICMP mappings, explicit ones included
	Explicit                               int // mappings with a live explicit (PCP) lifetime
	// Ports is the number of ports the B4 holds, all sets; PortsUsed the
	// mappings of the fullest protocol (each protocol has its own port
	// space, so the fullest one runs out first).
	Ports, PortsUsed int
	// AllocFailures counts new mappings, implicit or explicit, that found
	// no free port.
	AllocFailures uint64
	// Sets are the port sets held, the first one first, with their use
	// (docs/port-sets.md).
	Sets []SetUsage
	// Hosts is the number of LAN hosts holding a mapping; HostPortQuota
	// and HostSessionQuota the per-host quotas now (0: none; quota.go).
	Hosts                           int
	HostPortQuota, HostSessionQuota int
}

type counters struct {
	out, in, hairpin atomic.Uint64
	allocFail        atomic.Uint64
	drop             [2][nReasons]atomic.Uint64
}

const (
	dirOut = 0
	dirIn  = 1
)

func (c *counters) count(dir int, err error) {
	if d, ok := err.(*dropError); ok {
		c.drop[dir][d.r].Add(1)
	}
}

func (c *counters) drops(dir int) Drops {
	d := &c.drop[dir]
	return Drops{
		NoExternal:      d[rNoExternal].Load(),
		NotExternal:     d[rNotExternal].Load(),
		PortsExhausted:  d[rPortsExhausted].Load(),
		TooManySessions: d[rTooManySessions].Load(),
		NoMapping:       d[rNoMapping].Load(),
		Filtered:        d[rFiltered].Load(),
		Malformed:       d[rMalformed].Load(),
		Checksum:        d[rChecksum].Load(),
		Fragment:        d[rFragment].Load(),
		Unsupported:     d[rUnsupported].Load(),
		HostQuota:       d[rHostQuota].Load(),
	}
}
