package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/lw4o6/lw4o6/b4"
	"github.com/lw4o6/lw4o6/b4/nat"
)

// natQuotaFlags are the per-LAN-host NAT quotas (RFC 6888 REQ-4, REQ-5;
// b4/nat/quota.go).
type natQuotaFlags struct {
	fs       *pflag.FlagSet
	ports    string
	sessions int

	hostPorts int     // a count, or
	share     float64 // a share of the ports held
}

func (f *natQuotaFlags) register(fs *pflag.FlagSet) {
	f.fs = fs
	fs.StringVar(&f.ports, "nat-host-ports", fmt.Sprintf("%g%%", nat.DefaultHostPortShare*100),
		"the most external ports (NAT mappings) one LAN host (IPv4 source) holds per protocol: a `COUNT`, or a share of the ports held such as 25%; 0: no quota. Without --tun the SOCKS5 front end is the one LAN host: no quota unless given")
	fs.IntVar(&f.sessions, "nat-host-sessions", nat.DefaultHostSessions,
		"the most NAT sessions one LAN host holds, all protocols; 0: no quota (without --tun: none unless given)")
}

// check parses and validates what register filled in. With the SOCKS5
// front end alone (no TUN) every flow comes from its one LAN address, and a
// quota would only cap the B4's one user: the defaults then mean none.
func (f *natQuotaFlags) check(socksOnly bool) error {
	s := strings.TrimSpace(f.ports)
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(pct, 64)
		if err != nil || !(v >= 0 && v <= 100) {
			return fmt.Errorf("--nat-host-ports %q: want a count or a share from 0%% to 100%%", f.ports)
		}
		f.hostPorts, f.share = 0, v/100
	} else {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("--nat-host-ports %q: want a count from 0 (no quota) to 65535, or a share such as 25%%", f.ports)
		}
		f.hostPorts, f.share = n, 0
	}
	if f.sessions < 0 {
		return fmt.Errorf("--nat-host-sessions %d: want 0 (no quota) or more", f.sessions)
	}
	if socksOnly && f.fs != nil {
		if !f.fs.Changed("nat-host-ports") {
			f.hostPorts, f.share = 0, 0
		}
		if !f.fs.Changed("nat-host-sessions") {
			f.sessions = 0
		}
	}
	return nil
}

func (f *natQuotaFlags) apply(cfg *b4.Config) {
	cfg.NAT.HostPorts, cfg.NAT.HostPortShare, cfg.NAT.HostSessions = f.hostPorts, f.share, f.sessions
}
