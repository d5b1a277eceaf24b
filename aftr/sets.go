package aftr

import (
	"net/netip"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/stack/pcp"
)

// setNumber names the B4's port set a MAP with PORT_SET is about, by its
// Internal Port (docs/port-sets.md; RFC 7753 §4.1: several sets are
// separate MAPs with distinct Internal Ports, RFC 6887 §11.3 keys a mapping
// by it): 0 and 1 (the RFC 7753 §5.2 form) are the first set, 2..MaxSet an
// additional one. Any other port with protocol 0 names no set, and RFC 6887
// §11.3 makes protocol 0 with a non-zero port MALFORMED_REQUEST.
func setNumber(internalPort uint16) (uint16, bool) {
	switch {
	case internalPort <= 1:
		return 0, true
	case internalPort <= bindings.MaxSet:
		return internalPort, true
	}
	return 0, false
}

// refuseSet answers a request for one set more than MaxSetsPerB4 allows:
// USER_EX_QUOTA, the per-subscriber limit of RFC 6887 §11.3 (§7.4: a short
// lifetime error, 30 s), rather than NO_RESOURCES, which §7.4 reserves for
// the server's own shortage and which would stop the B4 from asking for any
// mapping (§11.4), renewals of its other sets included.
func (a *AFTR) refuseSet(b4 netip.Addr, set uint16) pcp.Response {
	a.count.Count(cPCPRefusedSetLimit, 0)
	a.log.Info("PCP set refused: B4 at its set limit", "b4", b4, "set", set, "max", a.cfg.MaxSetsPerB4)
	return pcp.Response{Result: pcp.UserExQuota, Lifetime: pcp.ShortErrorLifetime}
}
