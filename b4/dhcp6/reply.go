// Package dhcp6 is the B4's DHCPv6 client side: it sends an
// Information-Request (RFC 8415 §18.2.6) on the access link asking for
// OPTION_AFTR_NAME (RFC 6334), the DNS servers (RFC 3646) and the lw4o6
// container OPTION_S46_CONT_LW (RFC 7598 §5.3), parses and validates the
// Reply, and resolves the AFTR's name to an IPv6 address. Messages are
// built and read with github.com/insomniacslk/dhcp/dhcpv6; the lw4o6
// options, which that library leaves opaque, are parsed here.
package dhcp6

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

// Info is what a Reply provided. Options that failed validation are left
// out (zero) and their reasons listed in Refused: one bad option does not
// spoil the others.
type Info struct {
	// AFTRName is the validated OPTION_AFTR_NAME, lower case, without
	// the trailing dot; "" when absent or refused.
	AFTRName string
	// DNS are the recursive name servers of OPTION_DNS_SERVERS.
	DNS []netip.Addr
	// LW is the first valid OPTION_S46_CONT_LW; nil when none.
	LW *LW
	// Refresh is when to ask again: OPTION_INFORMATION_REFRESH_TIME, or
	// IRT_DEFAULT, and never below IRT_MINIMUM (RFC 8415 §21.23).
	Refresh time.Duration
	// Server is the answering server's DUID, for the log.
	Server string
	// Refused lists the options that were refused, with the reason.
	Refused []error
}

// Information Refresh Time bounds (RFC 8415 §7.6, §21.23).
const (
	IRTDefault = 86400 * time.Second
	IRTMinimum = 600 * time.Second
)

// irtMinimum is IRTMinimum; tests shorten it.
var irtMinimum = IRTMinimum

// ErrReply wraps every reason a whole message is not taken as the Reply.
var ErrReply = errors.New("dhcp6: reply refused")

// ParseReply parses b as the Reply to the Information-Request with
// transaction ID xid and Client Identifier clientID (nil if none was sent).
// A message that is not that Reply is an ErrReply (RFC 8415 §16.10: no
// Server Identifier, or another Client Identifier, means discard it); an
// answer with a non-Success status is an ErrReply as well.
func ParseReply(b []byte, xid [3]byte, clientID []byte) (Info, error) {
	d, err := dhcpv6.FromBytes(b)
	if err != nil {
		return Info{}, fmt.Errorf("%w: not a DHCPv6 message: %v", ErrReply, err)
	}
	m, ok := d.(*dhcpv6.Message)
	if !ok || m.MessageType != dhcpv6.MessageTypeReply {
		return Info{}, fmt.Errorf("%w: a %v, not a Reply", ErrReply, d.Type())
	}
	if m.TransactionID != dhcpv6.TransactionID(xid) {
		return Info{}, fmt.Errorf("%w: transaction ID %v, ours is %x", ErrReply, m.TransactionID, xid)
	}
	sid := m.Options.ServerID()
	if sid == nil {
		return Info{}, fmt.Errorf("%w: no Server Identifier (RFC 8415 §16.10)", ErrReply)
	}
	if clientID != nil {
		cid := m.Options.ClientID()
		if cid == nil || !bytes.Equal(cid.ToBytes(), clientID) {
			return Info{}, fmt.Errorf("%w: Client Identifier missing or not ours (RFC 8415 §16.10)", ErrReply)
		}
	}
	if st := m.Options.Status(); st != nil && st.StatusCode != iana.StatusSuccess {
		return Info{}, fmt.Errorf("%w: status %v %q", ErrReply, st.StatusCode, st.StatusMessage)
	}
	info := Info{Server: sid.String(), Refresh: IRTDefault}
	if irt := m.Options.InformationRefreshTime(IRTDefault); irt > 0 {
		info.Refresh = max(irt, irtMinimum)
	}
	// RFC 6334 §4: if several AFTR-Name options arrive, use the first.
	if o := m.Options.GetOne(OptAFTRName); o != nil {
		if info.AFTRName, err = ParseAFTRName(o.ToBytes()); err != nil {
			info.Refused = append(info.Refused, err)
		}
	}
	for _, ip := range m.Options.DNS() {
		a, ok := netip.AddrFromSlice(ip)
		if !ok || !a.Is6() || a.Is4In6() || a.IsUnspecified() || a.IsMulticast() {
			info.Refused = append(info.Refused, fmt.Errorf("%w: DNS server %v is not an IPv6 unicast address", ErrOption, ip))
			continue
		}
		info.DNS = append(info.DNS, a)
	}
	for _, o := range m.Options.Get(OptS46ContLW) {
		lw, err := ParseS46ContLW(o.ToBytes())
		if err != nil {
			info.Refused = append(info.Refused, err)
			continue
		}
		if info.LW == nil {
			info.LW = &lw
		}
	}
	return info, nil
}
