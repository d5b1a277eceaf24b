package aftr

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/aftr/snabbconf"
	"github.com/lw4o6/lw4o6/stack/cfgfile"
	"github.com/lw4o6/lw4o6/stack/frag"
)

// Snabb lwAFTR interoperability: its configuration file imported as is
// (ApplySnabb, SnabbBindings, LoadSnabb) and its data-plane choices
// (SnabbProfile). The conformance test replays Snabb's end-to-end vectors
// with both.

// SnabbProfile sets every knob where Snabb lwAFTR's choice differs from
// our RFC-sound default, so that the AFTR emits what Snabb emits, byte for
// byte. Each line names the default it replaces and why ours is the default.
func SnabbProfile(c *Config) {
	// RFC 2473 §6.3: the tunnel's hop limit is its own, 64 by default
	// (the router default, RFC 1700 era); Snabb uses 255, on ICMPv6 errors too.
	c.HopLimit = 255
	// RFC 1812 §5.3.1: a router decrements the TTL of what it forwards,
	// both ways; Snabb decrements only when encapsulating, so upstream
	// packets leave with the TTL they arrived with (and a hairpinned
	// packet is decremented once, at its re-encapsulation).
	c.DecapDecrementsTTL = false
	// RFC 1812 §4.3.2.3 quotes the datagram as received (TTL 1); Snabb
	// quotes it after decrementing (TTL 0, checksum updated).
	c.TimeExceededQuotesDecrementedTTL = true
	// ICMPv4 errors the AFTR originates: TTL 64 (RFC 1700 default TTL);
	// Snabb 255.
	c.ICMPv4ErrorTTL = 255
	// RFC 1812 §4.3.2.3 and RFC 4443 §2.4(c): 576 and 1280, as Snabb.
	c.ICMPv4ErrorMaxLen = 576
	c.ICMPv6ErrorMaxLen = 1280
	// RFC 791 keeps a reassembled datagram's ID and DF; Snabb zeroes the
	// ID and all flags of what it reassembles.
	c.ZeroReassembledIDAndFlags = true
	// RFC 791 §3.2: fragments carry the datagram's own ID; Snabb gives
	// the fragments it makes a new ID from its counter.
	c.NewIPv4FragmentIDs = true
	// RFC 7739: fragment IDs unpredictable; Snabb's test mode counts from
	// 0x4243 (IPv4) and 0x42424243 (IPv6).
	c.FragmentIDs = frag.SequentialIDs(0x4243, 0x42424243)
	// RFC 7596 §8.1 looks echo up by its identifier both ways; Snabb
	// delivers an echo request from the Internet only to the softwire that
	// holds port 0 of the address (an identifier chosen by the remote
	// pinger names no B4, RFC 6346 §5.3.2), and checks echo replies from
	// B4s against port 0 likewise.
	c.EchoByPort0 = true
	// RFC 7596 §6.2 leaves the hairpinning policy to the operator; ours
	// drops B4-to-B4 packets when it is off, Snabb sends them out of its
	// IPv4 side.
	c.UnhairpinnedToInternet = true
	// RFC 1812 §5.2.2: a router MUST verify the IPv4 header checksum and
	// drop what fails; Snabb verifies none (its case 80 pings with one).
	c.IgnoreIPv4HeaderChecksum = true
	// RFC 2983 §3 pipe model with RFC 6040 §4.2 ECN by default; Snabb
	// leaves the inner IPv4 header of what it decapsulates untouched.
	c.DecapTOS = TOSUntouched
	// An ICMPv4 error the AFTR originates for a B4 leaves our AFTR
	// straight into that B4's softwire with the TTL it was made with;
	// Snabb hands it to its hairpin path as if it came from the IPv4
	// side, where encapsulation decrements its TTL.
	c.HairpinOwnICMPv4 = true
}

// ApplySnabb fills c from a Snabb softwire-config: the AFTR's addresses,
// both MTUs, the outer flow label, hairpinning, the ICMP policies of both
// sides, error rate limits, reassembly bounds, packet filters, and the
// binding table as static bindings (appended to c.Static). Those settings
// are the file's, with Snabb's schema defaults for the leaves it omits;
// the rest of c (pools, PCP, SnabbProfile's knobs) is kept. The IPv6
// address of internal-interface becomes c.Addr when c.Addr is unset, else
// one of c.Addrs; external-interface's IPv4 address becomes c.IPv4Addr,
// the source of the ICMPv4 errors and an address answering echo. A filter
// outside filter.go's subset is a *snabbconf.Error (ErrValue) naming the
// leaf.
func ApplySnabb(c *Config, sc *snabbconf.Config) error {
	if err := applySnabbSettings(c, sc); err != nil {
		return err
	}
	c.Static = append(c.Static, SnabbBindings(sc, c.Addr)...)
	return nil
}

// applySnabbSettings is ApplySnabb but for the binding table.
func applySnabbSettings(c *Config, sc *snabbconf.Config) error {
	in, ex := &sc.Internal, &sc.External
	if in.IP.IsValid() {
		switch {
		case !c.Addr.IsValid():
			c.Addr = in.IP
		case c.Addr != in.IP:
			c.Addrs = append(c.Addrs, in.IP)
		}
	}
	if ex.IP.IsValid() {
		c.IPv4Addr = ex.IP
	}
	c.AccessMTU, c.InternetMTU = in.MTU, ex.MTU
	c.FlowLabel = in.FlowLabel
	c.Hairpinning = in.Hairpinning
	// generate-icmp-errors of the internal side governs the ICMPv6 errors
	// sent to B4s, that of the external side every ICMPv4 error (Snabb's
	// two rate limiters), including 3/1 for no binding (RFC 7596 §6.2).
	c.ICMPv6OnBindingFailure = in.GenerateICMPErrors
	c.ICMPv4Errors = ex.GenerateICMPErrors
	c.ICMPv4OnNoBinding = ex.GenerateICMPErrors
	// Snabb sends no error where its limit is 0 packets.
	if ex.ErrorRateLimit.Packets == 0 {
		c.ICMPv4Errors, c.ICMPv4OnNoBinding = false, false
	}
	if in.ErrorRateLimit.Packets == 0 {
		c.ICMPv6OnBindingFailure = false
	}
	c.AllowIncomingICMPv4 = ex.AllowIncomingICMP
	c.AllowIncomingICMPv6 = in.AllowIncomingICMP
	c.ICMPv4Rate = ratePerSecond(ex.ErrorRateLimit)
	c.ICMPv6Rate = ratePerSecond(in.ErrorRateLimit)
	c.Reassembly4.MaxFragmentsPerPacket = ex.MaxFragmentsPerPacket
	c.Reassembly4.MaxPackets = ex.MaxReassemblyPackets
	c.Reassembly6.MaxFragmentsPerPacket = in.MaxFragmentsPerPacket
	c.Reassembly6.MaxPackets = in.MaxReassemblyPackets
	for _, f := range []struct {
		dst       **Filter
		src, path string
	}{
		{&c.Filters.Ingress4, ex.IngressFilter, "softwire-config/external-interface/ingress-filter"},
		{&c.Filters.Egress4, ex.EgressFilter, "softwire-config/external-interface/egress-filter"},
		{&c.Filters.Ingress6, in.IngressFilter, "softwire-config/internal-interface/ingress-filter"},
		{&c.Filters.Egress6, in.EgressFilter, "softwire-config/internal-interface/egress-filter"},
	} {
		var err error
		if *f.dst, err = CompileFilter(f.src, false); err != nil {
			return &snabbconf.Error{File: "<softwire-config>", Path: f.path, Msg: f.path + ": " + err.Error(), Err: snabbconf.ErrValue}
		}
	}
	return nil
}

// SnabbBindings returns the binding table of sc as static bindings. A
// softwire without br-address uses defaultBR (Snabb's schema makes the
// leaf mandatory; older files relied on the AFTR's own address).
func SnabbBindings(sc *snabbconf.Config, defaultBR netip.Addr) []bindings.Binding {
	if sc.Internal.IP.IsValid() {
		defaultBR = sc.Internal.IP
	}
	out := make([]bindings.Binding, 0, len(sc.Softwires))
	for _, s := range sc.Softwires {
		br := s.BR
		if !br.IsValid() {
			br = defaultBR
		}
		out = append(out, bindings.Binding{B4: s.B4, IPv4: s.IPv4, PSID: s.PortSet, BR: br, Static: true})
	}
	return out
}

// MaxSnabbFile bounds the Snabb configuration LoadSnabb reads: 1 GiB, well
// above a 4-million-softwire table (~130 MB per million), far below what
// would exhaust memory.
const MaxSnabbFile = 1 << 30

// LoadSnabb parses the Snabb softwire-config at path and applies it to c
// as ApplySnabb does, but for the binding table: the file is read as a
// stream and its softwires go straight into a binding table that New
// adopts (see StaticBindings), never into a []Binding, so that a million
// of them load in about a second with little more memory than the table
// keeps (BENCHMARKS.md). A softwire the table refuses is an ErrConfig
// naming the file and line. Errors name the file, the line and the leaf.
func LoadSnabb(path string, c *Config) error {
	st := &snabbTable{}
	st.t = bindings.New(bindings.Config{Now: st.clock})
	ld := snabbLoader{path: path, st: st, brs: map[netip.Addr]struct{}{}}
	// Without br-address the default is the AFTR's address of
	// internal-interface, which may come after the binding table.
	var noBR []snabbconf.Softwire
	sc, err := snabbconf.StreamFile(path, func(s snabbconf.Softwire) error {
		if !s.BR.IsValid() {
			noBR = append(noBR, s)
			return nil
		}
		return ld.add(s, s.BR)
	})
	if err == nil {
		err = ld.flush()
	}
	if err != nil {
		return err
	}
	if n := sc.OutOfRange.Count; n > 0 && c.Logger != nil {
		// One line for all of them: a generated table can hold thousands.
		c.Logger.Warn("softwires skipped: Snabb loads them but they can match no port",
			"file", path, "count", n, "first-line", sc.OutOfRange.FirstLine, "first", sc.OutOfRange.First)
	}
	if err := applySnabbSettings(c, sc); err != nil {
		var se *snabbconf.Error
		if errors.As(err, &se) {
			// The parser keeps filters as opaque text; find the leaf's line.
			se.File = path
			if src, rerr := cfgfile.ReadFile(path, MaxSnabbFile); rerr == nil {
				se.Line = leafLine(src, se.Path)
			}
		}
		return err
	}
	c.snabbSettings = sc
	defaultBR := c.Addr // as SnabbBindings
	if sc.Internal.IP.IsValid() {
		defaultBR = sc.Internal.IP
	}
	for _, s := range noBR {
		if !defaultBR.IsValid() {
			// New gives it the AFTR's address.
			c.Static = append(c.Static, bindings.Binding{B4: s.B4, IPv4: s.IPv4, PSID: s.PortSet, Static: true})
			continue
		}
		if err := ld.add(s, defaultBR); err != nil {
			return err
		}
	}
	if err := ld.flush(); err != nil {
		return err
	}
	if c.snabb != nil {
		// A second file: one table for both, refusing conflicts as New would.
		for _, b := range st.t.Snapshot() {
			if err := c.snabb.t.AddStatic(b); err != nil {
				return fmt.Errorf("%s: %w: static binding %v: %w", path, ErrConfig, b, err)
			}
		}
		c.snabb.brs = append(c.snabb.brs, st.brs...)
		return nil
	}
	if st.t.Len() > 0 {
		c.snabb = st
	}
	return nil
}

// snabbLoader installs softwires in a snabbTable a batch at a time
// (bindings.Table.AddStatics: one lock for many).
type snabbLoader struct {
	path   string
	st     *snabbTable
	batch  []bindings.Binding
	lines  []int // of batch's softwires, for errors
	brs    map[netip.Addr]struct{}
	lastBR netip.Addr
}

const snabbBatch = 1024

func (ld *snabbLoader) add(s snabbconf.Softwire, br netip.Addr) error {
	if br != ld.lastBR {
		if _, ok := ld.brs[br]; !ok {
			ld.brs[br] = struct{}{}
			ld.st.brs = append(ld.st.brs, br)
		}
		ld.lastBR = br
	}
	ld.batch = append(ld.batch, bindings.Binding{B4: s.B4, IPv4: s.IPv4, PSID: s.PortSet, BR: br, Static: true})
	ld.lines = append(ld.lines, s.Line)
	if len(ld.batch) == snabbBatch {
		return ld.flush()
	}
	return nil
}

func (ld *snabbLoader) flush() error {
	i, err := ld.st.t.AddStatics(ld.batch)
	if err != nil {
		return fmt.Errorf("%s:%d: %w: static binding %v: %w", ld.path, ld.lines[i], ErrConfig, ld.batch[i], err)
	}
	ld.batch, ld.lines = ld.batch[:0], ld.lines[:0]
	return nil
}

// snabbTable is the binding table LoadSnabb fills, for New to adopt
// (Config.snabb).
type snabbTable struct {
	t     *bindings.Table
	brs   []netip.Addr // the BR addresses of its bindings, which become the AFTR's
	now   atomic.Pointer[func() time.Time]
	taken atomic.Bool
}

// clock is t's clock: the adopting AFTR's, time.Now until then.
func (st *snabbTable) clock() time.Time {
	if f := st.now.Load(); f != nil {
		return (*f)()
	}
	return time.Now()
}

// table returns the table New starts from: st's own for the first AFTR
// built from the Config, with the AFTR's clock; a new one with st's
// static bindings for any other (a table is one AFTR's); an empty one
// without st.
func (st *snabbTable) table(now func() time.Time) *bindings.Table {
	if st == nil {
		return bindings.New(bindings.Config{Now: now})
	}
	if st.taken.CompareAndSwap(false, true) {
		st.now.Store(&now)
		return st.t
	}
	t := bindings.New(bindings.Config{Now: now})
	for _, b := range st.t.Snapshot() {
		if b.Static {
			// It was valid in st.t, so it is in t.
			_ = t.AddStatic(b)
		}
	}
	return t
}

// addrs are the BR addresses of st's bindings.
func (st *snabbTable) addrs() []netip.Addr {
	if st == nil {
		return nil
	}
	return st.brs
}

func (st *snabbTable) len() int {
	if st == nil {
		return 0
	}
	return st.t.Len()
}

// StaticBindings returns the static bindings New will install: those
// LoadSnabb loaded, by IPv4 address and PSID, then Static. It is a copy:
// for inspection, not for a big table.
func (c *Config) StaticBindings() []bindings.Binding {
	var out []bindings.Binding
	if c.snabb != nil {
		for _, b := range c.snabb.t.Snapshot() {
			if b.Static {
				out = append(out, b)
			}
		}
	}
	return append(out, c.Static...)
}

// leafLine is the line of the first statement at path (keywords joined by
// "/") in a Snabb configuration, or 0. It skips comments and quoted text;
// the file has already been parsed, so it is well formed.
func leafLine(src []byte, path string) int {
	var stack []string
	line, word := 1, ""
	for i := 0; i < len(src); i++ {
		switch c := src[i]; {
		case c == '\n':
			line++
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			for i < len(src) && src[i] != '\n' {
				i++
			}
			i--
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			for i += 2; i+1 < len(src) && !(src[i] == '*' && src[i+1] == '/'); i++ {
				if src[i] == '\n' {
					line++
				}
			}
			i++
		case c == '"' || c == '\'':
			for i++; i < len(src) && src[i] != c; i++ {
				if src[i] == '\\' && c == '"' {
					i++
				}
				if i < len(src) && src[i] == '\n' {
					line++
				}
			}
		case c == '{':
			stack = append(stack, word)
			word = ""
		case c == '}':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			word = ""
		case c == ';':
			word = ""
		case c == ' ' || c == '\t' || c == '\r':
		default:
			j := i
			for j < len(src) && !strings.ContainsRune(" \t\r\n;{}\"'", rune(src[j])) {
				j++
			}
			if word == "" {
				word = string(src[i:j])
				if strings.Join(append(stack, word), "/") == path {
					return line
				}
			}
			i = j - 1
		}
	}
	return 0
}

// ratePerSecond turns Snabb's "packets per period" into our per-second
// rate; 0 packets (no limit given) keeps our default.
func ratePerSecond(r snabbconf.RateLimit) int {
	if r.Packets <= 0 {
		return 0
	}
	p := r.Period
	if p <= 0 {
		p = time.Second
	}
	return int(min(math.MaxInt32, math.Ceil(float64(r.Packets)/p.Seconds())))
}
