package lab

import (
	"fmt"
	"net/netip"

	"github.com/lw4o6/lw4o6/aftr"
	"github.com/lw4o6/lw4o6/b4"
)

// Failover is how the news of the AFTR's lost state reaches the B4s in the
// aftr-restart scenario: the design's two recovery paths (DESIGN.md,
// issue 7 item 5), alone or together.
type Failover string

// The failover modes.
const (
	// FailoverICMP: the AFTR answers a B4's packet that matches no binding
	// with ICMPv6 1/5 (RFC 7596 §6.2), and the B4 provisions again
	// (RFC 7596 §5.1). An idle B4 learns nothing until its renewal.
	FailoverICMP Failover = "icmp"
	// FailoverAnnounce: the restarted AFTR, having lost its state, sends
	// an unsolicited ANNOUNCE (RFC 6887 §14.1.3) to AnnounceGroup; no
	// ICMPv6 1/5.
	FailoverAnnounce Failover = "announce"
	// FailoverBoth: ANNOUNCE and ICMPv6 1/5.
	FailoverBoth Failover = "both"
)

// Failovers lists the modes, for flags and help.
var Failovers = []Failover{FailoverICMP, FailoverAnnounce, FailoverBoth}

// ParseFailover reads a mode name.
func ParseFailover(s string) (Failover, error) {
	for _, f := range Failovers {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("lab: failover mode %q: want icmp, announce or both", s)
}

// AnnounceGroup is the IPv6 multicast group on the access network the
// scenario's AFTR sends ANNOUNCE to and its B4s join (all nodes on the
// link: the lab's access network is one link).
var AnnounceGroup = netip.MustParseAddr("ff02::1")

// applyFailover maps the scenario's failover mode and journal onto the
// AFTR's and a B4's configuration; either may be nil. It is the one place
// that knows which knob each mechanism is. journalDir "" means no journal:
// the restarted AFTR starts empty.
func applyFailover(mode Failover, journalDir string, ac *aftr.Config, bc *b4.Config) error {
	if _, err := ParseFailover(string(mode)); err != nil {
		return err
	}
	icmp := mode == FailoverICMP || mode == FailoverBoth
	announce := mode == FailoverAnnounce || mode == FailoverBoth
	if ac != nil {
		ac.ICMPv6OnBindingFailure = icmp
		ac.Announce = announce
		if announce {
			ac.AnnounceGroup = AnnounceGroup
		}
		// "" : the restarted AFTR starts empty (state lost).
		ac.StateDir = journalDir
	}
	if bc != nil {
		// The B4 acts on a 1/5 when the AFTR sends one (its default).
		bc.ReprovisionOnICMP = true
		if announce {
			bc.AnnounceGroup = AnnounceGroup
		}
	}
	return nil
}
