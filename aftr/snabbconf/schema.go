package snabbconf

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// This file maps the statement tree onto the schema: softwire-config of
// snabb-softwire-v2 (src/lib/yang/snabb-softwire-v2.yang), plus the two
// additions of v3 (instance/external-device, any uint8 queue id) and v3's
// error-rate-limiting/packets default. Config-false nodes (softwire-state,
// next-hop/resolved-mac) are not configuration and are rejected.

type nodeKind uint8

const (
	leaf nodeKind = iota
	container
	list // a container that may repeat
)

// spec says how to read one child statement into a T.
type spec[T any] struct {
	kind nodeKind
	fn   func(p *parser, t *T, s *stmt) error
}

func (p *parser) newError(s *stmt, sentinel error, format string, args ...any) *Error {
	return &Error{File: p.file, Line: s.line, Path: s.path(), Msg: s.path() + ": " + fmt.Sprintf(format, args...), Err: sentinel}
}

// walk reads parent's children into t following specs, as the parser
// reads them; parent must be the innermost open block.
func walk[T any](p *parser, parent *stmt, t *T, specs map[string]spec[T]) error {
	var buf [8]seenLeaf
	seen := buf[:0] // single-instance children so far
	for {
		s, err := p.child(parent)
		if err != nil || s == nil {
			return err
		}
		sp, ok := specs[s.kw]
		if !ok {
			return p.unknown(parent, s)
		}
		switch {
		case sp.kind == leaf && s.block:
			return p.newError(s, ErrSyntax, "is a leaf: write %q", s.kw+" VALUE;")
		case sp.kind != leaf && !s.block:
			return p.newError(s, ErrSyntax, "is a container: write %q", s.kw+" { ... }")
		case sp.kind != leaf && s.hasArg:
			return p.newError(s, ErrSyntax, "a container takes no value (found %q)", s.arg)
		case sp.kind == leaf && !s.hasArg:
			return p.newError(s, ErrValue, "missing value")
		}
		if sp.kind != list {
			for _, f := range seen {
				if f.kw == s.kw {
					e := p.newError(s, ErrDuplicate, "given twice (first at line %d)", f.line)
					e.OtherLine = f.line
					return e
				}
			}
			seen = append(seen, seenLeaf{s.kw, s.line})
		}
		if err := sp.fn(p, t, s); err != nil {
			return err
		}
	}
}

type seenLeaf struct {
	kw   string
	line int
}

func (p *parser) unknown(parent, s *stmt) error {
	what := "leaf"
	if s.block {
		what = "container"
	}
	msg := fmt.Sprintf("unknown %s %q in %s", what, s.kw, parent.path())
	if parent.path() == "" {
		msg = fmt.Sprintf("unknown %s %q at top level (expected softwire-config)", what, s.kw)
	}
	return &Error{File: p.file, Line: s.line, Path: s.path(), Msg: msg, Err: ErrUnknown}
}

func (p *parser) missing(s *stmt, name string) error {
	return &Error{File: p.file, Line: s.line, Path: s.path() + "/" + name,
		Msg: fmt.Sprintf("%s: missing mandatory leaf %q", s.path(), name), Err: ErrMissing}
}

func (p *parser) bad(s *stmt, format string, args ...any) error {
	return p.newError(s, ErrValue, "bad value %q: %s", s.arg, fmt.Sprintf(format, args...))
}

// Value types.

func (p *parser) uintVal(s *stmt, min, max uint64) (uint64, error) {
	v, err := strconv.ParseUint(s.tmp(), 10, 64)
	if err != nil || s.arg[0] < '0' || s.arg[0] > '9' {
		return 0, p.bad(s, "not an unsigned decimal integer")
	}
	if v < min || v > max {
		return 0, p.bad(s, "out of range %d..%d", min, max)
	}
	return v, nil
}

func (p *parser) boolVal(s *stmt) (bool, error) {
	switch s.tmp() {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, p.bad(s, "want true or false")
}

func (p *parser) strVal(s *stmt) (string, error) {
	if !utf8.Valid(s.arg) {
		return "", p.bad(s, "not valid UTF-8")
	}
	return s.val(), nil
}

func (p *parser) ipv4Val(s *stmt) (netip.Addr, error) {
	a, err := netip.ParseAddr(s.tmp())
	if err != nil || !a.Is4() {
		return netip.Addr{}, p.bad(s, "not an IPv4 address")
	}
	return a, nil
}

func (p *parser) ipv6Val(s *stmt) (netip.Addr, error) {
	a, err := netip.ParseAddr(s.tmp())
	if err != nil || !a.Is6() || a.Zone() != "" {
		return netip.Addr{}, p.bad(s, "not an IPv6 address")
	}
	return a, nil
}

// macVal accepts yang:mac-address, six colon-separated hex octets.
func (p *parser) macVal(s *stmt) (net.HardwareAddr, error) {
	ok := len(s.arg) == 17
	for i := 0; ok && i < len(s.arg); i++ {
		c := s.arg[i]
		if i%3 == 2 {
			ok = c == ':'
		} else {
			ok = c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
		}
	}
	if !ok {
		return nil, p.bad(s, "not a MAC address (xx:xx:xx:xx:xx:xx)")
	}
	m, err := net.ParseMAC(s.tmp())
	if err != nil {
		return nil, p.bad(s, "not a MAC address (xx:xx:xx:xx:xx:xx)")
	}
	return m, nil
}

// Leaf constructors.

func uintLeaf[T any](min, max uint64, set func(*T, uint64)) spec[T] {
	return spec[T]{leaf, func(p *parser, t *T, s *stmt) error {
		v, err := p.uintVal(s, min, max)
		if err == nil {
			set(t, v)
		}
		return err
	}}
}

func boolLeaf[T any](set func(*T, bool)) spec[T] {
	return spec[T]{leaf, func(p *parser, t *T, s *stmt) error {
		v, err := p.boolVal(s)
		if err == nil {
			set(t, v)
		}
		return err
	}}
}

func strLeaf[T any](set func(*T, string)) spec[T] {
	return spec[T]{leaf, func(p *parser, t *T, s *stmt) error {
		v, err := p.strVal(s)
		if err == nil {
			set(t, v)
		}
		return err
	}}
}

func addrLeaf[T any](v6 bool, set func(*T, netip.Addr)) spec[T] {
	return spec[T]{leaf, func(p *parser, t *T, s *stmt) error {
		var a netip.Addr
		var err error
		if v6 {
			a, err = p.ipv6Val(s)
		} else {
			a, err = p.ipv4Val(s)
		}
		if err == nil {
			set(t, a)
		}
		return err
	}}
}

func macLeaf[T any](set func(*T, net.HardwareAddr)) spec[T] {
	return spec[T]{leaf, func(p *parser, t *T, s *stmt) error {
		m, err := p.macVal(s)
		if err == nil {
			set(t, m)
		}
		return err
	}}
}

func sub[T, U any](specs map[string]spec[U], field func(*T) *U) spec[T] {
	return spec[T]{container, func(p *parser, t *T, s *stmt) error {
		return walk(p, s, field(t), specs)
	}}
}

const maxInt = uint64(math.MaxInt)

// MTU bounds: RFC 791 §3.2 (every IPv4 module takes 68 octets), RFC 8200
// §5 (every IPv6 link carries 1280); the leaves are uint16.
const (
	minMTU4 = 68
	minMTU6 = 1280
)

// defaults returns the schema's defaults for one side. The MTUs are the
// schema's (external 1460, internal 1500), which the conformance captures
// confirm: icmp_on_fail.conf sets no MTU and expects a 1500-byte IPv6
// packet out unfragmented. (The conformance README has the two swapped.)
func defaults(internal bool) Interface {
	i := Interface{
		MTU:                   1460,
		MRU:                   1460,
		GenerateICMPErrors:    true,
		AllowIncomingICMP:     true,
		MaxFragmentsPerPacket: 20,
		MaxReassemblyPackets:  20000,
		ErrorRateLimit:        RateLimit{Packets: 200, Period: 2 * time.Second},
		VLANTag:               -1,
	}
	if internal {
		i.MTU = 1500
		i.Hairpinning = true
	}
	return i
}

var rateSpecs = map[string]spec[RateLimit]{
	"packets": uintLeaf(0, min(math.MaxUint32, maxInt), func(r *RateLimit, v uint64) { r.Packets = int(v) }),
	"period":  uintLeaf(1, math.MaxUint32, func(r *RateLimit, v uint64) { r.Period = time.Duration(v) * time.Second }),
}

var reassemblySpecs = map[string]spec[Interface]{
	"max-fragments-per-packet": uintLeaf(1, min(math.MaxUint32, maxInt), func(i *Interface, v uint64) { i.MaxFragmentsPerPacket = int(v) }),
	"max-packets":              uintLeaf(0, min(math.MaxUint32, maxInt), func(i *Interface, v uint64) { i.MaxReassemblyPackets = int(v) }),
}

func interfaceSpecs(internal bool) map[string]spec[Interface] {
	minMTU := uint64(minMTU4)
	if internal {
		minMTU = minMTU6
	}
	m := map[string]spec[Interface]{
		"mtu":                  uintLeaf(minMTU, math.MaxUint16, func(i *Interface, v uint64) { i.MTU = int(v) }),
		"mru":                  uintLeaf(0, math.MaxUint16, func(i *Interface, v uint64) { i.MRU = int(v) }),
		"ingress-filter":       strLeaf(func(i *Interface, v string) { i.IngressFilter = v }),
		"egress-filter":        strLeaf(func(i *Interface, v string) { i.EgressFilter = v }),
		"allow-incoming-icmp":  boolLeaf(func(i *Interface, v bool) { i.AllowIncomingICMP = v }),
		"generate-icmp-errors": boolLeaf(func(i *Interface, v bool) { i.GenerateICMPErrors = v }),
		"error-rate-limiting":  sub(rateSpecs, func(i *Interface) *RateLimit { return &i.ErrorRateLimit }),
		"reassembly":           sub(reassemblySpecs, func(i *Interface) *Interface { return i }),
	}
	if internal {
		// The schema's uint32, narrowed to the 20 bits of the field
		// (RFC 8200 §6).
		m["flow-label"] = uintLeaf(0, 1<<20-1, func(i *Interface, v uint64) { i.FlowLabel = uint32(v) })
		m["vlan-tag"] = uintLeaf(0, 4095, func(i *Interface, v uint64) { i.VLANTag = int(v) })
		m["hairpinning"] = boolLeaf(func(i *Interface, v bool) { i.Hairpinning = v })
	}
	return m
}

var (
	externalSpecs = interfaceSpecs(false)
	internalSpecs = interfaceSpecs(true)
)

// configSpecs is softwire-config itself.
var configSpecs = map[string]spec[builder]{
	"name":               strLeaf(func(b *builder, v string) { b.cfg.Name = v }),
	"binding-table":      sub(bindingTableSpecs, func(b *builder) *builder { return b }),
	"external-interface": sub(externalSpecs, func(b *builder) *Interface { return &b.cfg.External }),
	"internal-interface": sub(internalSpecs, func(b *builder) *Interface { return &b.cfg.Internal }),
	"instance":           {list, readInstance},
}

var rootSpecs = map[string]spec[builder]{
	"softwire-config": {container, func(p *parser, b *builder, s *stmt) error {
		b.seen = true
		return walk(p, s, b, configSpecs)
	}},
}

// builder collects the configuration and the indexes the checks need.
type builder struct {
	cfg  *Config
	seen bool // a softwire-config was found
	// emit receives each softwire once it has passed the checks.
	emit func(Softwire) error
	// byKey is the line of the softwire of each (ipv4, psid), as
	// ipv4<<16 | psid; byAddr the line and port-set parameters of the
	// first softwire of each IPv4 address, which all others must share.
	// Pointer-free and 12 and 8 octets an entry: at a million softwires
	// they are what the parser keeps, besides the buffer.
	byKey  map[uint64]int32
	byAddr map[uint32]addrFirst
	sw     swBuild // the softwire being read
}

type addrFirst struct {
	line   int32
	length uint8 // psid-length, k
	offset uint8 // reserved-ports-bit-count, a
}

func init() {
	internKeywords(rootSpecs)
	internKeywords(configSpecs)
	internKeywords(bindingTableSpecs)
	internKeywords(versionSpecs)
	internKeywords(softwireSpecs)
	internKeywords(portSetSpecs)
	internKeywords(externalSpecs)
	internKeywords(internalSpecs)
	internKeywords(rateSpecs)
	internKeywords(reassemblySpecs)
	internKeywords(instanceSpecs)
	internKeywords(queueSpecs)
	internKeywords(queueExtSpecs) // and next-hop's ip and mac
	internKeywords(queueIntSpecs)
}

// config walks the whole input. A schema error stops the walk, but the
// rest of the file is still read: a syntax error anywhere is reported
// before it, as when the file was parsed whole before being walked.
func (p *parser) config(emit func(Softwire) error) (*Config, error) {
	b := &builder{
		cfg:    &Config{Internal: defaults(true), External: defaults(false)},
		emit:   emit,
		byKey:  map[uint64]int32{},
		byAddr: map[uint32]addrFirst{},
	}
	root := &p.stmts[0]
	*root = stmt{block: true}
	if err := walk(p, root, b, rootSpecs); err != nil {
		if p.treeErr != nil {
			return nil, p.treeErr
		}
		if serr := p.drain(); serr != nil {
			return nil, serr
		}
		return nil, err
	}
	if !b.seen {
		return nil, &Error{File: p.file, Msg: "no softwire-config container", Err: ErrMissing}
	}
	c := b.cfg
	if len(c.Instances) > 0 && len(c.Instances[0].Queues) > 0 {
		q := c.Instances[0].Queues[0]
		apply(&c.External, q.External)
		apply(&c.Internal, q.Internal)
	}
	return c, nil
}

// apply copies a queue's addresses onto the side it configures.
func apply(i *Interface, q QueueInterface) {
	i.IP, i.MAC, i.NextHopIP, i.NextHopMAC = q.IP, q.MAC, q.NextHopIP, q.NextHopMAC
	if q.VLANTag >= 0 {
		i.VLANTag = q.VLANTag
	}
}
