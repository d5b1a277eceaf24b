package aftr

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/lw4o6/lw4o6/stack/packet"
)

// Packet filters: the ingress and egress filters of Snabb's configuration
// (its pflang, the pcap-filter language), in the subset an lwAFTR operator
// uses on IP packets:
//
//	expr      = term { ("or" | "||") term }
//	term      = factor { ("and" | "&&") factor }
//	factor    = ("not" | "!") factor | "(" expr ")" | primitive
//	primitive = "ip" | "ip6" | "tcp" | "udp" | "icmp" | "icmp6"
//	          | "len" ("<" | "<=" | ">" | ">=" | "=" | "==" | "!=") NUMBER
//	          | ["src" | "dst"] "host" ADDRESS
//	          | ["src" | "dst"] "net" PREFIX
//	          | ["src" | "dst"] "port" NUMBER
//
// Anything else is an error, never a filter that silently passes. As in
// pcap-filter, "len" counts the link-layer header Snabb's filters see: an
// Ethernet header of 14 octets before the IP packet. tcp, udp and port look
// at the first header (no IPv6 extension headers are walked); port matches
// TCP and UDP only, and never a non-first IPv4 fragment.

// Filter decides whether a packet passes. A nil *Filter passes everything.
type Filter struct {
	src string
	m   matcher
}

// Pass reports whether pkt (a whole IP packet) passes the filter.
func (f *Filter) Pass(pkt []byte) bool { return f == nil || f.m(pkt) }

func (f *Filter) String() string {
	if f == nil {
		return ""
	}
	return f.src
}

// Filters are the four filters of the two sides. Ingress filters see each
// packet as it arrives (before reassembly), egress filters each packet as
// it leaves (after fragmentation); a packet refused is a counted drop.
type Filters struct {
	Ingress4, Egress4 *Filter // Internet side
	Ingress6, Egress6 *Filter // access side
}

type matcher func(pkt []byte) bool

// ethernetHeaderLen is what pcap-filter's len adds to an IP packet on the
// Ethernet links Snabb filters.
const ethernetHeaderLen = 14

var errFilter = errors.New("filter")

// CompileFilter compiles a filter expression; "" gives nil (no filter).
// ipv6 says which side the filter is on, for the error message only.
func CompileFilter(src string, ipv6 bool) (*Filter, error) {
	if strings.TrimSpace(src) == "" {
		return nil, nil
	}
	toks, err := lexFilter(src)
	if err != nil {
		return nil, err
	}
	p := &filterParser{toks: toks}
	m, err := p.expr()
	if err == nil && p.pos < len(p.toks) {
		err = fmt.Errorf("%w %q: unexpected %q", errFilter, src, p.toks[p.pos])
	}
	if err != nil {
		return nil, err
	}
	_ = ipv6
	return &Filter{src: src, m: m}, nil
}

func lexFilter(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')':
			toks = append(toks, s[i:i+1])
			i++
		case c == '<' || c == '>' || c == '=' || c == '!':
			j := i + 1
			if j < len(s) && s[j] == '=' {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		case c == '&' || c == '|':
			if i+1 >= len(s) || s[i+1] != c {
				return nil, fmt.Errorf("%w %q: lone %q", errFilter, s, c)
			}
			toks = append(toks, s[i:i+2])
			i += 2
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n\r()<>=!&|", rune(s[j])) {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		}
	}
	return toks, nil
}

type filterParser struct {
	toks  []string
	pos   int
	depth int
}

// maxFilterDepth bounds nesting (parentheses, not) so that no filter
// text can exhaust the stack.
const maxFilterDepth = 64

func (p *filterParser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return ""
}

func (p *filterParser) next() string { t := p.peek(); p.pos++; return t }

func (p *filterParser) fail(format string, args ...any) error {
	return fmt.Errorf("%w %q: %s", errFilter, strings.Join(p.toks, " "), fmt.Sprintf(format, args...))
}

func (p *filterParser) expr() (matcher, error) {
	l, err := p.term()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t == "or" || t == "||"; t = p.peek() {
		p.pos++
		r, err := p.term()
		if err != nil {
			return nil, err
		}
		a := l
		l = func(b []byte) bool { return a(b) || r(b) }
	}
	return l, nil
}

func (p *filterParser) term() (matcher, error) {
	l, err := p.factor()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t == "and" || t == "&&"; t = p.peek() {
		p.pos++
		r, err := p.factor()
		if err != nil {
			return nil, err
		}
		a := l
		l = func(b []byte) bool { return a(b) && r(b) }
	}
	return l, nil
}

func (p *filterParser) factor() (matcher, error) {
	if p.depth++; p.depth > maxFilterDepth {
		return nil, p.fail("nested deeper than %d", maxFilterDepth)
	}
	defer func() { p.depth-- }()
	switch t := p.next(); t {
	case "not", "!":
		m, err := p.factor()
		if err != nil {
			return nil, err
		}
		return func(b []byte) bool { return !m(b) }, nil
	case "(":
		m, err := p.expr()
		if err != nil {
			return nil, err
		}
		if p.next() != ")" {
			return nil, p.fail("missing )")
		}
		return m, nil
	case "":
		return nil, p.fail("expression ends early")
	default:
		p.pos--
		return p.primitive()
	}
}

func (p *filterParser) primitive() (matcher, error) {
	t := p.next()
	switch t {
	case "ip":
		return isVersion(4), nil
	case "ip6":
		return isVersion(6), nil
	case "tcp":
		return isProto(packet.ProtoTCP), nil
	case "udp":
		return isProto(packet.ProtoUDP), nil
	case "icmp":
		return func(b []byte) bool { return version(b) == 4 && proto(b) == packet.ProtoICMP }, nil
	case "icmp6":
		return func(b []byte) bool { return version(b) == 6 && proto(b) == packet.ProtoICMPv6 }, nil
	case "len":
		op := p.next()
		n, err := strconv.Atoi(p.next())
		if err != nil {
			return nil, p.fail("len needs a number")
		}
		cmp, ok := relops[op]
		if !ok {
			return nil, p.fail("len needs a comparison, not %q", op)
		}
		return func(b []byte) bool { return cmp(len(b)+ethernetHeaderLen, n) }, nil
	}
	dir := ""
	if t == "src" || t == "dst" {
		dir, t = t, p.next()
	}
	arg := p.next()
	switch t {
	case "host":
		a, err := netip.ParseAddr(arg)
		if err != nil {
			return nil, p.fail("host needs an address, not %q", arg)
		}
		return addrMatch(dir, func(x netip.Addr) bool { return x == a }), nil
	case "net":
		pf, err := netip.ParsePrefix(arg)
		if err != nil {
			return nil, p.fail("net needs a prefix, not %q", arg)
		}
		pf = pf.Masked()
		return addrMatch(dir, pf.Contains), nil
	case "port":
		n, err := strconv.ParseUint(arg, 10, 16)
		if err != nil {
			return nil, p.fail("port needs a number, not %q", arg)
		}
		port := uint16(n)
		return func(b []byte) bool {
			s, d, ok := ports(b)
			return ok && (dir != "dst" && s == port || dir != "src" && d == port)
		}, nil
	}
	return nil, p.fail("unsupported primitive %q", t)
}

var relops = map[string]func(a, b int) bool{
	"<": func(a, b int) bool { return a < b }, "<=": func(a, b int) bool { return a <= b },
	">": func(a, b int) bool { return a > b }, ">=": func(a, b int) bool { return a >= b },
	"=": func(a, b int) bool { return a == b }, "==": func(a, b int) bool { return a == b },
	"!=": func(a, b int) bool { return a != b },
}

func version(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	return int(b[0] >> 4)
}

func isVersion(v int) matcher { return func(b []byte) bool { return version(b) == v } }

// proto is the first header's protocol (IPv4 protocol, IPv6 next header).
func proto(b []byte) int {
	switch {
	case version(b) == 4 && len(b) >= packet.IPv4HeaderLen:
		return int(b[9])
	case version(b) == 6 && len(b) >= packet.IPv6HeaderLen:
		return int(b[6])
	}
	return -1
}

func isProto(n int) matcher { return func(b []byte) bool { return proto(b) == n } }

func addrs(b []byte) (src, dst netip.Addr, ok bool) {
	switch {
	case version(b) == 4 && len(b) >= packet.IPv4HeaderLen:
		return netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20])), true
	case version(b) == 6 && len(b) >= packet.IPv6HeaderLen:
		return netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40])), true
	}
	return
}

func addrMatch(dir string, f func(netip.Addr) bool) matcher {
	return func(b []byte) bool {
		s, d, ok := addrs(b)
		return ok && (dir != "dst" && f(s) || dir != "src" && f(d))
	}
}

func ports(b []byte) (src, dst uint16, ok bool) {
	var l4 []byte
	switch p := proto(b); {
	case p != packet.ProtoTCP && p != packet.ProtoUDP:
		return
	case version(b) == 4:
		hl := int(b[0]&0xf) * 4
		if binary.BigEndian.Uint16(b[6:])&0x1fff != 0 || len(b) < hl+4 {
			return
		}
		l4 = b[hl:]
	default:
		if len(b) < packet.IPv6HeaderLen+4 {
			return
		}
		l4 = b[packet.IPv6HeaderLen:]
	}
	return binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:]), true
}
