package dhcp6

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/lw4o6/lw4o6/stack/portset"
)

// Option codes of RFC 7598 §10 (and RFC 6334 §3, RFC 3646 §3, RFC 8415 §21.23).
const (
	OptDNSServers  = 23
	OptRefreshTime = 32
	OptAFTRName    = 64
	OptS46Rule     = 89
	OptS46BR       = 90
	OptS46DMR      = 91
	OptS46V4V6Bind = 92
	OptS46PortPar  = 93
	OptS46ContLW   = 96
)

// LW is an lw4o6 binding from OPTION_S46_CONT_LW (RFC 7598 §5.3).
type LW struct {
	// BR is the lwAFTR's address: the first OPTION_S46_BR (RFC 7598 §4.2
	// leaves the use of several to other documents).
	BR netip.Addr
	// IPv4 is the public address (OPTION_S46_V4V6BIND); invalid when the
	// container had no binding option (then only BR is known).
	IPv4 netip.Addr
	// BindPrefix is the IPv6 binding prefix the tunnel source is formed
	// from (RFC 7596 §5.1).
	BindPrefix netip.Prefix
	// PSID is the port set (OPTION_S46_PORTPARAMS); PSID{} (k = 0) is the
	// whole address.
	PSID portset.PSID
}

// HasBinding reports whether the container gave an address and port set.
func (l LW) HasBinding() bool { return l.IPv4.IsValid() }

// Ports returns the port set as the one contiguous range lw4o6 uses
// (RFC 7596 §5.1: a SHOULD be 0). A set with a > 0 is several ranges and
// is refused here: the B4's port set is one range.
func (l LW) Ports() (portset.Range, error) {
	r, ok := l.PSID.Contiguous()
	if !ok {
		return r, fmt.Errorf("%w: S46 port set %v has offset a > 0, several ranges; this B4 uses one range (a = 0, RFC 7596 §5.1)", ErrOption, l.PSID)
	}
	return r, nil
}

// TunnelSource returns the B4's softwire address (RFC 7596 §5.1 Figure 3):
// a /128 binding prefix is the address itself; otherwise the prefix, padded
// to 64 bits, then 16 zero bits, the IPv4 address and the PSID,
// left-padded to 16 bits.
func (l LW) TunnelSource() netip.Addr {
	if l.BindPrefix.Bits() == 128 {
		return l.BindPrefix.Addr()
	}
	a := l.BindPrefix.Masked().Addr().As16()
	clear(a[8:])
	v4 := l.IPv4.As4()
	copy(a[10:14], v4[:])
	binary.BigEndian.PutUint16(a[14:], l.PSID.ID)
	return netip.AddrFrom16(a)
}

func (l LW) String() string {
	if !l.HasBinding() {
		return fmt.Sprintf("br %v (no binding)", l.BR)
	}
	return fmt.Sprintf("br %v ipv4 %v %v bind-prefix %v", l.BR, l.IPv4, l.PSID, l.BindPrefix)
}

// option is one TLV of a DHCPv6 option area.
type option struct {
	code uint16
	data []byte
}

// splitOptions cuts an option area into its options; a truncated option
// is an error (RFC 8415 §21.1: option-len is the data's length).
func splitOptions(b []byte) ([]option, error) {
	var out []option
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, fmt.Errorf("%w: %d octets left, too few for an option header", ErrOption, len(b))
		}
		code, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if 4+n > len(b) {
			return nil, fmt.Errorf("%w: option %d of %d octets runs past its area (%d left)", ErrOption, code, n, len(b)-4)
		}
		out = append(out, option{code, b[4 : 4+n]})
		b = b[4+n:]
	}
	return out, nil
}

// ParseS46ContLW parses the data of OPTION_S46_CONT_LW. The container is
// refused whole on any violation of RFC 7598 §5.3 and §6 (no BR, more than
// one V4V6BIND, a MAP-only option) or any invalid parameter (RFC 7598 §8:
// SHOULD discard the container and log).
func ParseS46ContLW(b []byte) (LW, error) {
	opts, err := splitOptions(b)
	if err != nil {
		return LW{}, fmt.Errorf("S46_CONT_LW: %w", err)
	}
	var lw LW
	binds := 0
	for _, o := range opts {
		switch o.code {
		case OptS46BR:
			if len(o.data) != 16 {
				return LW{}, fmt.Errorf("%w: S46_BR of %d octets, want 16 (RFC 7598 §4.2)", ErrOption, len(o.data))
			}
			a := netip.AddrFrom16([16]byte(o.data))
			if err := checkUnicast6(a); err != nil {
				return LW{}, fmt.Errorf("%w: S46_BR %v: %v", ErrOption, a, err)
			}
			if !lw.BR.IsValid() {
				lw.BR = a
			}
		case OptS46V4V6Bind:
			if binds++; binds > 1 {
				return LW{}, fmt.Errorf("%w: more than one S46_V4V6BIND in S46_CONT_LW (RFC 7598 §5.3: at most one)", ErrOption)
			}
			if err := lw.parseBind(o.data); err != nil {
				return LW{}, err
			}
		case OptS46Rule, OptS46DMR, OptS46PortPar:
			return LW{}, fmt.Errorf("%w: option %d not permitted in S46_CONT_LW (RFC 7598 §6)", ErrOption, o.code)
		default:
			return LW{}, fmt.Errorf("%w: unsupported option %d in S46_CONT_LW (RFC 7598 §8: container discarded)", ErrOption, o.code)
		}
	}
	if !lw.BR.IsValid() {
		return LW{}, fmt.Errorf("%w: S46_CONT_LW without S46_BR (RFC 7598 §5.3: at least one)", ErrOption)
	}
	return lw, nil
}

// parseBind parses OPTION_S46_V4V6BIND (RFC 7598 §4.4).
func (lw *LW) parseBind(b []byte) error {
	if len(b) < 5 {
		return fmt.Errorf("%w: S46_V4V6BIND of %d octets, want at least 5 (RFC 7598 §4.4)", ErrOption, len(b))
	}
	v4 := netip.AddrFrom4([4]byte(b[:4]))
	if err := checkPublic4(v4); err != nil {
		return fmt.Errorf("%w: S46_V4V6BIND address %v: %v", ErrOption, v4, err)
	}
	bits := int(b[4])
	if bits > 128 {
		return fmt.Errorf("%w: S46_V4V6BIND bindprefix6-len %d, more than 128", ErrOption, bits)
	}
	if bits > 64 && bits < 128 {
		// Figure 3 of RFC 7596 §5.1 puts the interface identifier in the
		// low 64 bits: a prefix longer than /64 would be overwritten.
		return fmt.Errorf("%w: S46_V4V6BIND bindprefix6-len %d: want at most 64, or 128 (RFC 7596 §5.1)", ErrOption, bits)
	}
	n := (bits + 7) / 8
	if len(b) < 5+n {
		return fmt.Errorf("%w: S46_V4V6BIND prefix of %d bits runs past the option", ErrOption, bits)
	}
	var a [16]byte
	copy(a[:], b[5:5+n])
	pfx := netip.PrefixFrom(netip.AddrFrom16(a), bits)
	if pfx.Masked() != pfx {
		return fmt.Errorf("%w: S46_V4V6BIND prefix %v has bits set past its length (RFC 7598 §4.4: right-padded with zeros)", ErrOption, pfx)
	}
	if err := checkUnicast6(pfx.Addr()); bits == 128 && err != nil {
		return fmt.Errorf("%w: S46_V4V6BIND address %v: %v", ErrOption, pfx.Addr(), err)
	}
	subs, err := splitOptions(b[5+n:])
	if err != nil {
		return fmt.Errorf("S46_V4V6BIND: %w", err)
	}
	var psid portset.PSID // none: the whole address (RFC 7598 §4.5)
	seen := false
	for _, o := range subs {
		if o.code != OptS46PortPar {
			return fmt.Errorf("%w: unsupported option %d in S46_V4V6BIND (RFC 7598 §8: container discarded)", ErrOption, o.code)
		}
		if seen {
			return fmt.Errorf("%w: more than one S46_PORTPARAMS in S46_V4V6BIND", ErrOption)
		}
		seen = true
		if psid, err = ParsePortParams(o.data); err != nil {
			return err
		}
	}
	lw.IPv4, lw.BindPrefix, lw.PSID = v4, pfx, psid
	return nil
}

// ParsePortParams parses OPTION_S46_PORTPARAMS (RFC 7598 §4.5) into a PSID
// set (RFC 7597 §5.1). Parameters that make no set are refused: offset
// above 15, offset + PSID-len above 16, a PSID with PSID-len 0 (the field
// is then to be ignored, so a non-zero one is a server error), or PSID
// bits set in the padding beyond PSID-len.
func ParsePortParams(b []byte) (portset.PSID, error) {
	if len(b) != 4 {
		return portset.PSID{}, fmt.Errorf("%w: S46_PORTPARAMS of %d octets, want 4 (RFC 7598 §4.5)", ErrOption, len(b))
	}
	a, k, field := b[0], b[1], binary.BigEndian.Uint16(b[2:])
	if a > 15 {
		return portset.PSID{}, fmt.Errorf("%w: S46_PORTPARAMS offset %d, allowed 0-15 (RFC 7598 §4.5)", ErrOption, a)
	}
	if int(a)+int(k) > 16 {
		return portset.PSID{}, fmt.Errorf("%w: S46_PORTPARAMS offset %d + PSID-len %d > 16: no port set (RFC 7597 §5.1)", ErrOption, a, k)
	}
	if k == 0 {
		if field != 0 {
			return portset.PSID{}, fmt.Errorf("%w: S46_PORTPARAMS PSID 0x%04x with PSID-len 0: no port set", ErrOption, field)
		}
		return portset.NewPSID(a, 0, 0)
	}
	// The PSID is left-aligned in the 16-bit field (RFC 7598 §4.5).
	id := field >> (16 - k)
	if field != id<<(16-k) {
		return portset.PSID{}, fmt.Errorf("%w: S46_PORTPARAMS PSID field 0x%04x has bits past PSID-len %d (padding must be zero)", ErrOption, field, k)
	}
	p, err := portset.NewPSID(a, k, id)
	if err != nil {
		return p, fmt.Errorf("%w: S46_PORTPARAMS: %v", ErrOption, err)
	}
	return p, nil
}

// checkUnicast6 refuses what cannot be an lwAFTR or tunnel address.
func checkUnicast6(a netip.Addr) error {
	switch {
	case a.Is4In6():
		return fmt.Errorf("an IPv4-mapped address")
	case a.IsUnspecified(), a.IsLoopback(), a.IsMulticast(), a.IsLinkLocalUnicast():
		return fmt.Errorf("not a global unicast address")
	}
	return nil
}

// checkPublic4 refuses what cannot be the B4's public IPv4 address (RFC
// 6890 special-purpose blocks that never route on the Internet).
func checkPublic4(a netip.Addr) error {
	v := a.As4()
	switch {
	case v[0] == 0, v[0] == 127, v[0] >= 224:
		return fmt.Errorf("not a unicast address")
	case v[0] == 169 && v[1] == 254:
		return fmt.Errorf("link-local")
	case v[0] == 192 && v[1] == 0 && v[2] == 0 && v[3] < 8:
		return fmt.Errorf("in 192.0.0.0/29, the softwire's own addresses (RFC 6333 §5.7)")
	}
	return nil
}
