package snabbconf

import (
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/lw4o6/lw4o6/stack/portset"
)

var bindingTableSpecs = map[string]spec[builder]{
	"softwire": {list, readSoftwire},
	"version":  sub(versionSpecs, func(b *builder) *Version { return &b.cfg.Version }),
}

var versionSpecs = map[string]spec[Version]{
	"number": uintLeaf(0, math.MaxUint64, func(v *Version, n uint64) { v.Number = n }),
	"date": {leaf, func(p *parser, v *Version, s *stmt) error {
		// yang:date-and-time is RFC 3339 with an optional fraction.
		t, err := time.Parse(time.RFC3339, s.val())
		if err != nil {
			return p.bad(s, "not a date-and-time (RFC 3339)")
		}
		v.Date = t
		return nil
	}},
}

// swBuild is a softwire being read, with the lines of the leaves that
// the checks name (0: absent). The statements themselves cannot be kept:
// the parser reuses them.
type swBuild struct {
	sw                         Softwire
	ipv4, psid, b4, plen, rpbc int
	plenVal, rpbcVal           uint8
}

var softwireSpecs = map[string]spec[swBuild]{
	"ipv4": {leaf, func(p *parser, b *swBuild, s *stmt) (err error) {
		b.ipv4 = s.line
		b.sw.IPv4, err = p.ipv4Val(s)
		return err
	}},
	"psid": {leaf, func(p *parser, b *swBuild, s *stmt) error {
		v, err := p.uintVal(s, 0, math.MaxUint16)
		b.psid, b.sw.PSID = s.line, uint16(v)
		return err
	}},
	"b4-ipv6": {leaf, func(p *parser, b *swBuild, s *stmt) (err error) {
		b.b4 = s.line
		b.sw.B4, err = p.ipv6Val(s)
		return err
	}},
	"br-address": addrLeaf(true, func(b *swBuild, a netip.Addr) { b.sw.BR = a }),
	// padding is an alignment artefact of Snabb's binary tables.
	"padding":  uintLeaf(0, math.MaxUint16, func(*swBuild, uint64) {}),
	"port-set": sub(portSetSpecs, func(b *swBuild) *swBuild { return b }),
}

var portSetSpecs = map[string]spec[swBuild]{
	"psid-length": {leaf, func(p *parser, b *swBuild, s *stmt) error {
		v, err := p.uintVal(s, 0, 16)
		b.plen, b.plenVal = s.line, uint8(v)
		return err
	}},
	"reserved-ports-bit-count": {leaf, func(p *parser, b *swBuild, s *stmt) error {
		v, err := p.uintVal(s, 0, 16)
		b.rpbc, b.rpbcVal = s.line, uint8(v)
		return err
	}},
}

// readSoftwire reads one binding-table/softwire, checks it against the
// softwires before it and hands it on (builder.emit).
func readSoftwire(p *parser, b *builder, s *stmt) error {
	w := &b.sw // reused: a swBuild of each would be the parse's garbage
	*w = swBuild{sw: Softwire{Line: s.line}}
	if err := walk(p, s, w, softwireSpecs); err != nil {
		return err
	}
	switch {
	case w.ipv4 == 0:
		return p.missing(s, "ipv4")
	case w.psid == 0:
		return p.missing(s, "psid")
	case w.b4 == 0:
		return p.missing(s, "b4-ipv6")
	case w.plen == 0:
		return p.missing(s, "port-set/psid-length")
	}
	if int(w.plenVal)+int(w.rpbcVal) > 16 {
		line, leaf := w.rpbc, "reserved-ports-bit-count"
		if line == 0 {
			line, leaf = w.plen, "psid-length"
		}
		path := s.path() + "/port-set/" + leaf
		return &Error{File: p.file, Line: line, Path: path, Err: ErrValue,
			Msg: fmt.Sprintf("%s: psid-length %d + reserved-ports-bit-count %d exceeds 16 bits (RFC 7597 §5.1)", path, w.plenVal, w.rpbcVal)}
	}
	c := b.cfg
	ps, err := portset.NewPSID(w.rpbcVal, w.plenVal, w.sw.PSID)
	if err != nil {
		// Snabb loads such a softwire (its own generate-configuration
		// writes psid 64 with psid-length 6) although it can match no
		// port; refusing the whole file would refuse what Snabb runs.
		// Skip it and say so once (Config.OutOfRange).
		if c.OutOfRange.Count == 0 {
			c.OutOfRange.FirstLine = w.psid
			c.OutOfRange.First = fmt.Sprintf("psid %d does not fit in psid-length %d (must be below %d)", w.sw.PSID, w.plenVal, 1<<w.plenVal)
		}
		c.OutOfRange.Count++
		return nil
	}
	w.sw.PortSet = ps

	ip := u32(w.sw.IPv4)
	key := uint64(ip)<<16 | uint64(w.sw.PSID)
	if first, dup := b.byKey[key]; dup {
		e := p.newError(s, ErrDuplicate, "softwire ipv4 %v psid %d is already defined at line %d", w.sw.IPv4, w.sw.PSID, first)
		e.OtherLine = int(first)
		return e
	}
	if f, ok := b.byAddr[ip]; ok {
		if f.length != ps.Length || f.offset != ps.Offset {
			e := p.newError(s, ErrConflict,
				"%v has psid-length %d, reserved-ports-bit-count %d here but psid-length %d, reserved-ports-bit-count %d in the softwire at line %d; RFC 7597 §5.1: a and k must be the same for every CE sharing an address",
				w.sw.IPv4, ps.Length, ps.Offset, f.length, f.offset, f.line)
			e.OtherLine = int(f.line)
			return e
		}
	} else {
		b.byAddr[ip] = addrFirst{line: int32(s.line), length: ps.Length, offset: ps.Offset}
	}
	b.byKey[key] = int32(s.line)
	return b.emit(w.sw)
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
