package b4

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/lw4o6/lw4o6/stack/portset"
)

// Failover configures how the B4 learns of, and leaves, its binding beyond
// the plain MAP/renew cycle. It is embedded in Config.
type Failover struct {
	// AnnounceGroup is an IPv6 multicast group on the access network (e.g.
	// ff02::1) to which the AFTR sends its restart ANNOUNCE (RFC 6887
	// §14.1.3) in a softwire packet. The B4 accepts packets to it only
	// from its AFTR, and from them only that ANNOUNCE. The zero Addr
	// accepts the ANNOUNCE unicast only. Joining the group on the access
	// socket is the caller's job.
	AnnounceGroup netip.Addr
	// KeepBinding leaves the binding at the AFTR when Run ends; by default
	// the B4 deletes it (MAP lifetime 0, RFC 6887 §15), so that a restart
	// with another nonce is not refused for the binding's remaining life.
	KeepBinding bool
	// AllowLoopback lets LAN traffic to 127.0.0.0/8 into the softwire:
	// the laptop lab reaches the AFTR host's loopback that way (lw4o6-aftr
	// --egress-allow-loopback). Never in a deployment.
	AllowLoopback bool
}

func (f *Failover) validate() error {
	if f.AnnounceGroup.IsValid() && (!f.AnnounceGroup.Is6() || !f.AnnounceGroup.IsMulticast()) {
		return fmt.Errorf("%w: AnnounceGroup %v is not an IPv6 multicast group", ErrConfig, f.AnnounceGroup)
	}
	return nil
}

// CheckStatic validates a static binding as New does, for a caller that
// reports errors against its own flags.
func CheckStatic(ip netip.Addr, ports portset.Range) error {
	st := Static{StaticIPv4: ip, StaticPorts: ports}
	return st.validate()
}

// static reports whether the B4 runs on a static binding (no PCP).
func (b *B4) static() bool { return b.cfg.StaticIPv4.IsValid() }

// deleteWait bounds the delete Run sends as it ends (RFC 6887 §15): one
// transmission (the first retransmission would come after IRT, 3 s), and a
// shutdown that does not hang on an AFTR that is gone.
var deleteWait = 1500 * time.Millisecond
