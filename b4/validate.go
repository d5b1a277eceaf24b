package b4

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/lw4o6/lw4o6/stack/counter"
	"github.com/lw4o6/lw4o6/stack/pcp"
	"github.com/lw4o6/lw4o6/stack/portset"
)

// ErrBadGrant wraps every reason a granted address and port set is refused.
var ErrBadGrant = errors.New("b4: unusable grant")

// special4 names the IPv4 special-purpose block a holds (RFC 6890; RFC 1122
// §3.2.1.3; RFC 6333 §5.7 for 192.0.0.0/29), or "" for an ordinary unicast
// address. The names end up in counter names.
func special4(a [4]byte) string {
	switch {
	case a[0] == 0:
		return "this-network" // 0.0.0.0/8
	case a[0] == 127:
		return "loopback" // 127.0.0.0/8
	case a[0] == 169 && a[1] == 254:
		return "link-local" // 169.254.0.0/16
	case a[0] == 192 && a[1] == 0 && a[2] == 0 && a[3] < 8:
		return "softwire" // 192.0.0.0/29, the DS-Lite/lw4o6 tunnel addresses
	case a[0]&0xf0 == 224:
		return "multicast" // 224.0.0.0/4
	case a[0]&0xf0 == 240:
		return "reserved" // 240.0.0.0/4, 255.255.255.255 included
	}
	return ""
}

// specialDrop is the counter of LAN packets dropped for a destination in
// each special4 block.
var specialDrop = map[string]counter.ID{
	"this-network": cDropDstThisNetwork,
	"loopback":     cDropDstLoopback,
	"link-local":   cDropDstLinkLocal,
	"softwire":     cDropDstSoftwire,
	"multicast":    cDropDstMulticast,
	"reserved":     cDropDstReserved,
}

// checkPublicIPv4 refuses an address that cannot be the B4's public IPv4.
func checkPublicIPv4(a netip.Addr) error {
	a = a.Unmap()
	if !a.Is4() {
		return fmt.Errorf("%w: %v is not an IPv4 address", ErrBadGrant, a)
	}
	if s := special4(a.As4()); s != "" {
		return fmt.Errorf("%w: %v is a %s address (RFC 6890)", ErrBadGrant, a, s)
	}
	return nil
}

// checkSet refuses a port set the B4 must not use: empty, beyond 65535,
// holding port 0, or not the aligned power-of-two block of PROTOCOL.md §8
// item 2 (a = 0, RFC 7596 §5.1: first = PSID << (16-k), size 2^(16-k)).
// wantMax is the most ports asked for (RFC 7753 §4.2: never more).
func checkSet(first uint16, size uint32, wantMax uint16) (portset.Range, error) {
	switch {
	case size == 0:
		return portset.Range{}, fmt.Errorf("%w: empty port set", ErrBadGrant)
	case size > uint32(wantMax):
		return portset.Range{}, fmt.Errorf("%w: %d ports, more than the %d asked for (RFC 7753 §4.2)", ErrBadGrant, size, wantMax)
	case first == 0:
		return portset.Range{}, fmt.Errorf("%w: port set %d+%d holds port 0", ErrBadGrant, first, size)
	case uint32(first)+size-1 > 65535:
		return portset.Range{}, fmt.Errorf("%w: port set %d+%d runs past 65535", ErrBadGrant, first, size)
	case size&(size-1) != 0 || uint32(first)%size != 0:
		return portset.Range{}, fmt.Errorf("%w: port set %d+%d is not an aligned power-of-two block (PROTOCOL.md §8 item 2)", ErrBadGrant, first, size)
	}
	return portset.NewRange(first, size)
}

// validateGrant checks a MAP answer before anything uses it and returns the
// port set it assigns: PORT_SET gives the size, the Assigned External Port
// its first port (RFC 7753 §4.2). A server that merely echoes the request
// (Size 65535, First Internal Port 0, or the request's own suggestion) fails
// here, as does any other nonsense; the caller logs and retries later.
func validateGrant(m *pcp.Mapping, asked uint16) (portset.Range, error) {
	if err := checkPublicIPv4(m.ExternalIP); err != nil {
		return portset.Range{}, err
	}
	if m.Lifetime <= 0 {
		return portset.Range{}, fmt.Errorf("%w: SUCCESS with lifetime 0", ErrBadGrant)
	}
	size := uint32(1) // RFC 7753 §4.2: no PORT_SET in the answer is one port
	if m.Response != nil {
		ps, ok, err := m.Response.PortSet()
		if err != nil {
			return portset.Range{}, fmt.Errorf("%w: PORT_SET: %v", ErrBadGrant, err)
		}
		if ok {
			// RFC 7753 §4.2: a single port is answered without PORT_SET;
			// and the lwAFTR does not translate, so the internal set is
			// the external one (PROTOCOL.md §8 item 1).
			if ps.Size < 2 {
				return portset.Range{}, fmt.Errorf("%w: PORT_SET size %d (RFC 7753 §4.2: a single port has no PORT_SET)", ErrBadGrant, ps.Size)
			}
			if ps.FirstInternalPort != m.ExternalPort {
				return portset.Range{}, fmt.Errorf("%w: First Internal Port %d differs from the Assigned External Port %d (PROTOCOL.md §8 item 1)",
					ErrBadGrant, ps.FirstInternalPort, m.ExternalPort)
			}
			size = uint32(ps.Size)
		}
	} else if m.PortSet != nil {
		size = uint32(m.PortSet.Size)
	}
	return checkSet(m.ExternalPort, size, asked)
}
