package pcp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"unicode/utf8"
)

func (o Option) checkLen(code OptionCode) error {
	if o.Code != code {
		return fmt.Errorf("%w: %v is not %v", ErrOptionLength, o.Code, code)
	}
	if n, ok := code.fixedLen(); ok && len(o.Data) != n {
		return fmt.Errorf("%w: %v has %d octets, want %d", ErrOptionLength, code, len(o.Data), n)
	}
	return nil
}

// ThirdParty decodes a THIRD_PARTY option.
func (o Option) ThirdParty() (netip.Addr, error) {
	if err := o.checkLen(OptThirdParty); err != nil {
		return netip.Addr{}, err
	}
	return getAddr(o.Data), nil
}

// Filter decodes a FILTER option. It does not check the prefix length
// (see Filter.Valid).
func (o Option) Filter() (Filter, error) {
	if err := o.checkLen(OptFilter); err != nil {
		return Filter{}, err
	}
	return Filter{
		PrefixLen:  o.Data[1],
		RemotePort: binary.BigEndian.Uint16(o.Data[2:]),
		RemoteIP:   getAddr(o.Data[4:]),
	}, nil
}

// PortSet decodes a PORT_SET option. It does not check Size or the range.
func (o Option) PortSet() (PortSet, error) {
	if err := o.checkLen(OptPortSet); err != nil {
		return PortSet{}, err
	}
	return PortSet{
		Size:              binary.BigEndian.Uint16(o.Data),
		FirstInternalPort: binary.BigEndian.Uint16(o.Data[2:]),
		Parity:            o.Data[4]&1 == 1, // the other 7 bits are reserved
	}, nil
}

// Description decodes a DESCRIPTION option; invalid UTF-8 or more than
// MaxDescriptionLen octets is ErrDescription (RFC 7220 §2-3).
func (o Option) Description() (string, error) {
	if err := o.checkLen(OptDescription); err != nil {
		return "", err
	}
	if len(o.Data) > MaxDescriptionLen || !utf8.Valid(o.Data) {
		return "", ErrDescription
	}
	return string(o.Data), nil
}

// ThirdParty returns the THIRD_PARTY address, if the option is present.
func (m *Message) ThirdParty() (netip.Addr, bool, error) {
	o, ok := m.Option(OptThirdParty)
	if !ok {
		return netip.Addr{}, false, nil
	}
	a, err := o.ThirdParty()
	return a, err == nil, err
}

// PortSet returns the PORT_SET option, if present.
func (m *Message) PortSet() (PortSet, bool, error) {
	o, ok := m.Option(OptPortSet)
	if !ok {
		return PortSet{}, false, nil
	}
	p, err := o.PortSet()
	return p, err == nil, err
}

// Filters returns every FILTER option, in order.
func (m *Message) Filters() ([]Filter, error) {
	var fs []Filter
	for _, o := range m.Options {
		if o.Code != OptFilter {
			continue
		}
		f, err := o.Filter()
		if err != nil {
			return nil, err
		}
		fs = append(fs, f)
	}
	return fs, nil
}

// Description returns the DESCRIPTION text, if the option is present.
func (m *Message) Description() (string, bool, error) {
	o, ok := m.Option(OptDescription)
	if !ok {
		return "", false, nil
	}
	s, err := o.Description()
	return s, err == nil, err
}

// PreferFailure reports whether a PREFER_FAILURE option is present.
func (m *Message) PreferFailure() bool {
	_, ok := m.Option(OptPreferFailure)
	return ok
}
