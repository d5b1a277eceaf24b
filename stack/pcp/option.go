package pcp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// OptionCode identifies an option. Codes 0-127 are mandatory to process,
// 128-255 optional (RFC 6887 §7.3).
type OptionCode uint8

// Options known to this package.
const (
	OptThirdParty    OptionCode = 1   // RFC 6887 §13.1
	OptPreferFailure OptionCode = 2   // RFC 6887 §13.2
	OptFilter        OptionCode = 3   // RFC 6887 §13.3
	OptDescription   OptionCode = 128 // RFC 7220
	OptPrefix64      OptionCode = 129 // RFC 7225, carried opaque
	OptPortSet       OptionCode = 130 // RFC 7753
)

// Fixed data lengths of the options that have one.
const (
	thirdPartyLen    = 16
	preferFailureLen = 0
	filterLen        = 20
	portSetLen       = 5
	// MaxDescriptionLen is the longest DESCRIPTION (RFC 7220 §2).
	MaxDescriptionLen = 1016
)

// Mandatory reports whether a server must process the option or fail
// (the most significant bit is clear, RFC 6887 §7.3).
func (c OptionCode) Mandatory() bool { return c&0x80 == 0 }

// fixedLen is the required data length of a known fixed-size option.
func (c OptionCode) fixedLen() (int, bool) {
	switch c {
	case OptThirdParty:
		return thirdPartyLen, true
	case OptPreferFailure:
		return preferFailureLen, true
	case OptFilter:
		return filterLen, true
	case OptPortSet:
		return portSetLen, true
	}
	return 0, false
}

// singleInstance reports options whose definition allows one occurrence
// in requests and responses (RFC 6887 §13.1, §13.2; RFC 7220 §2; RFC 7753
// §4). PREFIX64 allows one in a request but many in a response (RFC 7225
// §4.1); it is not processed here, so it is not counted.
func (c OptionCode) singleInstance() bool {
	switch c {
	case OptThirdParty, OptPreferFailure, OptDescription, OptPortSet:
		return true
	}
	return false
}

func (c OptionCode) String() string {
	switch c {
	case OptThirdParty:
		return "THIRD_PARTY"
	case OptPreferFailure:
		return "PREFER_FAILURE"
	case OptFilter:
		return "FILTER"
	case OptDescription:
		return "DESCRIPTION"
	case OptPrefix64:
		return "PREFIX64"
	case OptPortSet:
		return "PORT_SET"
	}
	return fmt.Sprintf("OPTION(%d)", uint8(c))
}

// Option is one option, its data without padding. Unknown options are
// kept as they are.
type Option struct {
	Code OptionCode
	Data []byte
}

// PortSet is the content of the PORT_SET option (RFC 7753 §4).
type PortSet struct {
	Size              uint16 // number of ports, never 0
	FirstInternalPort uint16 // request: = Internal Port; response: first internal port mapped
	Parity            bool   // P bit: preserve parity
}

// Last returns the last internal port of the set and false when the set is
// empty or runs past 65535 (which this project rejects, PROTOCOL.md §2.3).
func (p PortSet) Last() (uint16, bool) {
	last := uint32(p.FirstInternalPort) + uint32(p.Size) - 1
	if p.Size == 0 || last > 0xffff {
		return 0, false
	}
	return uint16(last), true
}

// Filter is the content of the FILTER option (RFC 6887 §13.3). PrefixLen
// counts bits of the 128-bit field: 96-128 for an IPv4 RemoteIP, 0-128 for
// IPv6; 0 means "remove all filters".
type Filter struct {
	PrefixLen  uint8
	RemotePort uint16 // 0 = all ports
	RemoteIP   netip.Addr
}

// FilterFor builds the Filter that permits prefix p and port (0 = any),
// converting an IPv4 prefix length to the 128-bit form.
func FilterFor(p netip.Prefix, port uint16) Filter {
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	return Filter{PrefixLen: uint8(bits), RemotePort: port, RemoteIP: p.Addr().Unmap()}
}

// Valid reports whether the prefix length suits the address family
// (RFC 6887 §13.3). Prefix length 0 ("remove all filters") is valid for
// either family: the RFC gives it that meaning without naming a family.
func (f Filter) Valid() bool {
	if f.PrefixLen > 128 {
		return false
	}
	if f.PrefixLen == 0 {
		return true
	}
	if f.RemoteIP.Is4() {
		return f.PrefixLen >= 96
	}
	return true
}

// ThirdPartyOption builds a THIRD_PARTY option naming the internal address.
func ThirdPartyOption(internal netip.Addr) Option {
	b := make([]byte, thirdPartyLen)
	putAddr(b, internal)
	return Option{Code: OptThirdParty, Data: b}
}

// PreferFailureOption builds a PREFER_FAILURE option.
func PreferFailureOption() Option { return Option{Code: OptPreferFailure, Data: []byte{}} }

// FilterOption builds a FILTER option.
func FilterOption(f Filter) Option {
	b := make([]byte, filterLen)
	b[1] = f.PrefixLen
	binary.BigEndian.PutUint16(b[2:], f.RemotePort)
	putAddr(b[4:], f.RemoteIP)
	return Option{Code: OptFilter, Data: b}
}

// DescriptionOption builds a DESCRIPTION option (RFC 7220); s should be
// UTF-8 of at most MaxDescriptionLen octets.
func DescriptionOption(s string) Option { return Option{Code: OptDescription, Data: []byte(s)} }

// PortSetOption builds a PORT_SET option (RFC 7753 §4).
func PortSetOption(p PortSet) Option {
	b := make([]byte, portSetLen)
	putPortSet(b, p)
	return Option{Code: OptPortSet, Data: b}
}

// putPortSet writes p's option data into b (portSetLen octets).
func putPortSet(b []byte, p PortSet) {
	binary.BigEndian.PutUint16(b, p.Size)
	binary.BigEndian.PutUint16(b[2:], p.FirstInternalPort)
	b[4] = 0
	if p.Parity {
		b[4] = 1
	}
}
