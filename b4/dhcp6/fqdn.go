package dhcp6

import (
	"errors"
	"fmt"
	"strings"
)

// ErrOption wraps every reason an option of a Reply is refused.
var ErrOption = errors.New("dhcp6: option refused")

// ParseAFTRName parses the tunnel-endpoint-name of OPTION_AFTR_NAME (RFC
// 6334 §3): one FQDN in DNS wire format without compression (RFC 8415
// §10). It returns the name without the trailing dot. If the option holds
// more than one name, the first is used (RFC 6334 §4).
//
// The client checks of RFC 6334 §4 are all applied: option-len > 3, no
// label running past the option, a validly formed name, no compression and
// at least one non-empty label. "Validly formed" is read as RFC 1035 §2.3.1
// with RFC 1123 §2.1's leading digits: letters, digits and hyphens, a label
// neither starting nor ending with a hyphen, 1-63 octets a label, 255 octets
// the whole name in wire form.
func ParseAFTRName(b []byte) (string, error) {
	if len(b) <= 3 {
		return "", fmt.Errorf("%w: AFTR-Name: option-len %d, must be > 3 (RFC 6334 §4)", ErrOption, len(b))
	}
	var labels []string
	for i := 0; ; {
		if i >= len(b) {
			return "", fmt.Errorf("%w: AFTR-Name: no root label (name not terminated)", ErrOption)
		}
		n := int(b[i])
		if n == 0 {
			if i+1 > 255 {
				return "", fmt.Errorf("%w: AFTR-Name: name is %d octets, more than 255 (RFC 1035 §2.3.4)", ErrOption, i+1)
			}
			break
		}
		if n&0xc0 != 0 {
			// 0b11: a compression pointer (RFC 8415 §10 forbids them);
			// 0b01, 0b10: reserved label types. Neither is a length.
			return "", fmt.Errorf("%w: AFTR-Name: label type 0x%02x at octet %d (compression is not allowed, RFC 8415 §10)", ErrOption, n&0xc0, i)
		}
		if i+1+n > len(b) {
			return "", fmt.Errorf("%w: AFTR-Name: label of %d octets runs past the option", ErrOption, n)
		}
		l := b[i+1 : i+1+n]
		if err := checkLabel(l); err != nil {
			return "", fmt.Errorf("%w: AFTR-Name: label %q: %v", ErrOption, l, err)
		}
		labels = append(labels, string(l))
		i += 1 + n
	}
	if len(labels) == 0 {
		return "", fmt.Errorf("%w: AFTR-Name: the root alone, no label (RFC 6334 §4)", ErrOption)
	}
	return strings.ToLower(strings.Join(labels, ".")), nil
}

// checkLabel applies the letter-digit-hyphen rule to one label.
func checkLabel(l []byte) error {
	if l[0] == '-' || l[len(l)-1] == '-' {
		return errors.New("starts or ends with a hyphen")
	}
	for _, c := range l {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
		default:
			return fmt.Errorf("octet 0x%02x is not a letter, digit or hyphen", c)
		}
	}
	return nil
}

// AppendName appends name in DNS wire format, as OPTION_AFTR_NAME carries
// it; a server (or a test) builds the option with it. name must be valid.
func AppendName(b []byte, name string) []byte {
	for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0)
}
