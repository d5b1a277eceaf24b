// Package snabbconf reads Snabb lwAFTR's configuration file, the
// `softwire-config` tree of its YANG schema (snabb-softwire-v2, with the
// v3 revision's additions), as is, into the values an RFC 7596 lwAFTR
// needs: the binding table (RFC 7596 §6.1, with RFC 7597 §5.1 port sets)
// and the policy of each side.
//
// Every leaf and container the schema defines under softwire-config is
// recognised; anything else, and any malformed value, is an *Error naming
// the file, the line and the leaf's path.
package snabbconf

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/lw4o6/lw4o6/stack/cfgfile"
	"github.com/lw4o6/lw4o6/stack/portset"
)

// Config is one softwire-config.
type Config struct {
	// Name is softwire-config/name, empty if absent.
	Name string
	// Softwires is the binding table in file order.
	Softwires []Softwire
	// Version is binding-table/version, zero if absent.
	Version Version
	// Internal is the IPv6, B4-facing side (internal-interface).
	Internal Interface
	// External is the IPv4, Internet-facing side (external-interface).
	External Interface
	// Instances are the instance list entries, in file order.
	Instances []Instance
	// OutOfRange counts the softwires skipped because their psid does not
	// fit in their psid-length: Snabb loads them (and can never match
	// them), so they are skipped rather than refusing the file.
	OutOfRange Skipped
}

// Skipped describes softwires left out of Config.Softwires.
type Skipped struct {
	Count     int
	FirstLine int    // line of the first one's psid
	First     string // why the first one was skipped
}

// Softwire is one binding-table/softwire entry: the RFC 7596 §6.1 3-tuple
// plus the lwAFTR address the B4 tunnels to.
type Softwire struct {
	IPv4 netip.Addr
	// PSID is the psid leaf, equal to PortSet.ID.
	PSID uint16
	// B4 is b4-ipv6, the B4's tunnel address.
	B4 netip.Addr
	// BR is br-address, the lwAFTR address this B4 tunnels to. Snabb's
	// schema makes it mandatory; here it may be absent (the zero Addr),
	// and the user should fall back to Internal.IP.
	BR netip.Addr
	// PortSet is the softwire's ports: Offset is reserved-ports-bit-count
	// (a), Length is psid-length (k), ID is psid. Ports of block A = 0 are
	// excluded when a > 0 (RFC 7597 §5.1), which Snabb's own code gets
	// wrong by excluding the ports below 2^a instead.
	PortSet portset.PSID
	// Line is the line of the `softwire {` statement.
	Line int
}

// Version is binding-table/version.
type Version struct {
	Number uint64
	Date   time.Time
}

// RateLimit is error-rate-limiting: at most Packets ICMP errors per Period.
type RateLimit struct {
	Packets int
	Period  time.Duration
}

// Interface is one side of the lwAFTR: softwire-config's
// internal-interface or external-interface, completed with the addresses
// of the first queue of the first instance.
//
// Precedence: the schema has no ip, mac or next-hop leaf in the top-level
// interface containers, so IP, MAC, NextHopIP and NextHopMAC come from
// instance[0]/queue[0] (the first in file order); without an instance they
// are zero. VLANTag is the queue's vlan-tag when the queue gives one, else
// the top-level one (internal-interface only has one). Other queues are
// only in Config.Instances.
type Interface struct {
	// IP is the AFTR's own address on this side: the source of the ICMP
	// errors it sends and the address it answers pings on.
	IP netip.Addr
	// MTU is the largest packet sent on this side. Defaults, from Snabb's
	// schema: 1460 external (IPv4), 1500 internal (IPv6).
	MTU int
	// MRU is the largest packet received (default 1460, both sides).
	MRU int
	// FlowLabel is the outer IPv6 flow label (internal only; default 0).
	FlowLabel uint32
	// Hairpinning lets B4s reach each other through the AFTR (internal
	// only; default true; RFC 7596 §6.2 wants it configurable).
	Hairpinning bool
	// GenerateICMPErrors: send ICMP errors from this side (default true).
	GenerateICMPErrors bool
	// AllowIncomingICMP: accept ICMP arriving on this side (default true).
	AllowIncomingICMP bool
	// MaxFragmentsPerPacket is reassembly/max-fragments-per-packet
	// (default 20).
	MaxFragmentsPerPacket int
	// MaxReassemblyPackets is reassembly/max-packets, the most concurrent
	// reassemblies (default 20000).
	MaxReassemblyPackets int
	// ErrorRateLimit is error-rate-limiting (defaults: 200 packets per
	// 2 s, the v3 schema's; v2 gave packets no default).
	ErrorRateLimit RateLimit
	// IngressFilter and EgressFilter are pflang filter texts, kept opaque;
	// empty means no filter.
	IngressFilter, EgressFilter string
	// VLANTag is the 802.1Q VLAN ID, or -1 when untagged. Unused.
	VLANTag int
	// MAC, NextHopIP and NextHopMAC are the Ethernet details of the first
	// queue. Unused: the lwAFTR works at the IP layer.
	MAC        net.HardwareAddr
	NextHopIP  netip.Addr
	NextHopMAC net.HardwareAddr
}

// Instance is one softwire-config/instance entry.
type Instance struct {
	// Device is the instance's key, the (internal or only) device.
	Device string
	// ExternalDevice is the v3 schema's external-device, or else the v2
	// schema's queue/external-interface/device of the first queue giving
	// one; empty when absent (on-a-stick).
	ExternalDevice string
	Queues         []Queue
	Line           int
}

// Queue is one instance/queue entry.
type Queue struct {
	ID       int
	External QueueInterface
	Internal QueueInterface
	Line     int
}

// QueueInterface is a queue's external-interface or internal-interface.
type QueueInterface struct {
	// IP is the AFTR's own address on this side (mandatory).
	IP netip.Addr
	// MAC is the NIC's address; NextHopIP or NextHopMAC (the schema's
	// choice, at most one is set) the next hop's.
	MAC        net.HardwareAddr
	NextHopIP  netip.Addr
	NextHopMAC net.HardwareAddr
	// VLANTag is the 802.1Q VLAN ID, or -1 when untagged.
	VLANTag int
	// Device is v2's external-interface/device (external side only).
	Device string
}

// Sentinel errors; every *Error wraps one of them.
var (
	ErrSyntax    = errors.New("snabbconf: syntax error")
	ErrUnknown   = errors.New("snabbconf: unknown leaf or container")
	ErrValue     = errors.New("snabbconf: bad value")
	ErrMissing   = errors.New("snabbconf: missing mandatory leaf")
	ErrDuplicate = errors.New("snabbconf: given twice")
	ErrConflict  = errors.New("snabbconf: conflicting softwires")
)

// Error is a configuration error at a place in the file.
type Error struct {
	File string
	// Line is the line of the offending statement (0 if none).
	Line int
	// OtherLine is, for duplicates and conflicts, the line of the earlier
	// statement it clashes with; 0 otherwise.
	OtherLine int
	// Path is the offending statement's path, such as
	// "softwire-config/external-interface/mtu"; "" outside any statement.
	Path string
	// Msg is the message, which names Path.
	Msg string
	// Err is the sentinel: ErrSyntax, ErrUnknown, ErrValue, ErrMissing,
	// ErrDuplicate or ErrConflict.
	Err error
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrTooLarge: the input holds more than MaxFile octets. It wraps
// cfgfile.ErrTooLarge.
var ErrTooLarge = fmt.Errorf("snabbconf: %w", cfgfile.ErrTooLarge)

// MaxFile bounds what the parse functions read.
const MaxFile = 1 << 30

// maxInput is MaxFile; tests lower it.
var maxInput int64 = MaxFile

// ParseFile reads and parses the regular file at path, of at most MaxFile
// octets.
func ParseFile(path string) (*Config, error) {
	return parseFile(path, nil)
}

// Parse reads r to its end (at most MaxFile octets) and parses it;
// filename names it in errors.
func Parse(r io.Reader, filename string) (*Config, error) {
	return parse(r, filename, nil)
}

// Stream is Parse for big binding tables: instead of keeping the softwires
// in Config.Softwires, which it leaves empty, it hands each to fn in file
// order, once it has passed the checks (duplicates, conflicting port-set
// parameters; out-of-range PSIDs are skipped and counted in
// Config.OutOfRange as by Parse). The file is read as a stream, never
// whole: what the parse keeps besides its 64 KiB buffer is 20 octets or so
// per softwire for the checks.
//
// fn sees softwires before the rest of the file is known to be valid: when
// Stream fails, drop what fn built. An error from fn stops the parse and
// is returned as is, unless the file has a syntax error, which is
// returned instead (as from Parse, syntax errors come first).
func Stream(r io.Reader, filename string, fn func(Softwire) error) (*Config, error) {
	if fn == nil {
		fn = func(Softwire) error { return nil }
	}
	return parse(r, filename, fn)
}

// StreamFile is Stream on the regular file at path, of at most MaxFile
// octets.
func StreamFile(path string, fn func(Softwire) error) (*Config, error) {
	if fn == nil {
		fn = func(Softwire) error { return nil }
	}
	return parseFile(path, fn)
}

// parseFile opens path as cfgfile.ReadFile does (a regular file within the
// bound, never a device or a pipe) but streams it; parse enforces the bound
// while reading.
func parseFile(path string, fn func(Softwire) error) (*Config, error) {
	f, err := cfgfile.Open(path, MaxFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parse(f, path, fn)
}

type parser struct {
	file string
	lex  *lexer
	// stmts[d] is the statement being read at depth d (0: the root).
	stmts [maxDepth + 2]stmt
	depth int // of the innermost open block
	// kwCache holds recent keywords (see keyword).
	kwCache [32]string
	// treeErr is the first syntax error met, which wins over any schema
	// error (see config).
	treeErr error
}

// parse reads r; fn nil keeps the softwires in Config.Softwires.
func parse(r io.Reader, filename string, fn func(Softwire) error) (*Config, error) {
	if filename == "" {
		filename = "<input>"
	}
	p := &parser{file: filename}
	p.lex = newLexer(p, r, maxInput)
	// Drop a UTF-8 byte-order mark, which editors sometimes write.
	if p.lex.fill(3) && string(p.lex.buf[:3]) == "\xef\xbb\xbf" {
		p.lex.pos = 3
	}
	var kept []Softwire
	emit := fn
	if emit == nil {
		emit = func(s Softwire) error {
			kept = append(kept, s)
			return nil
		}
	}
	c, err := p.config(emit)
	if err != nil {
		return nil, err
	}
	c.Softwires = kept
	return c, nil
}
