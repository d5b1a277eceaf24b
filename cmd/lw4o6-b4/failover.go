package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/lw4o6/lw4o6/b4"
	"github.com/lw4o6/lw4o6/stack/portset"

	"github.com/spf13/pflag"
)

// failoverFlags are the flags of failover, shutdown, state and static
// provisioning (issue 7 items 2-4).
type failoverFlags struct {
	announceGroup netip.Addr
	keepBinding   bool
	stateDir      string
	staticIPv4    netip.Addr
	staticPorts   portset.Range
	allowLoopback bool

	group, ipv4, ports string
}

func (f *failoverFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.group, "announce-group", "", "accept the AFTR's restart ANNOUNCE (RFC 6887 §14.1.3) sent to this IPv6 multicast `GROUP` on the access network (e.g. ff02::1), joined on the access socket")
	fs.BoolVar(&f.keepBinding, "keep-binding", false, "leave the binding at the AFTR on shutdown (default: delete it, RFC 6887 §15)")
	fs.StringVar(&f.stateDir, "state-dir", "", "keep state (the PCP nonce) in `DIR` (default: $STATE_DIRECTORY, else $XDG_STATE_HOME/lw4o6-b4, else ~/.local/state/lw4o6-b4)")
	fs.StringVar(&f.ipv4, "ipv4", "", "static provisioning: the public IPv4 `ADDR` a provisioning system bound at the AFTR; no PCP (needs --port-set)")
	fs.StringVar(&f.ports, "port-set", "", "static provisioning: the port set `N-M`, an aligned power-of-two block (needs --ipv4)")
	fs.BoolVar(&f.allowLoopback, "allow-loopback", false, "let LAN traffic to 127.0.0.0/8 into the softwire (laptop lab with lw4o6-aftr --egress-allow-loopback only)")
}

// check parses and validates what register filled in.
func (f *failoverFlags) check() error {
	if f.group != "" {
		a, err := netip.ParseAddr(f.group)
		if err != nil || !a.Is6() || !a.IsMulticast() || a.Is4In6() {
			return fmt.Errorf("--announce-group %q: want an IPv6 multicast group such as ff02::1", f.group)
		}
		f.announceGroup = a
	}
	if (f.ipv4 == "") != (f.ports == "") {
		return errors.New("static provisioning needs both --ipv4 and --port-set")
	}
	if f.ipv4 == "" {
		return nil
	}
	a, err := netip.ParseAddr(f.ipv4)
	if err != nil || !a.Is4() {
		return fmt.Errorf("--ipv4 %q: want an IPv4 address", f.ipv4)
	}
	lo, hi, ok := strings.Cut(f.ports, "-")
	first, err1 := strconv.ParseUint(lo, 10, 16)
	last, err2 := strconv.ParseUint(hi, 10, 16)
	if !ok || err1 != nil || err2 != nil || last < first {
		return fmt.Errorf("--port-set %q: want N-M, such as 4096-8191", f.ports)
	}
	f.staticIPv4 = a
	f.staticPorts = portset.Range{First: uint16(first), Size: uint32(last-first) + 1}
	if err := b4.CheckStatic(f.staticIPv4, f.staticPorts); err != nil {
		msg, _ := strings.CutPrefix(err.Error(), b4.ErrConfig.Error()+": ")
		return fmt.Errorf("--ipv4 %s --port-set %s: %s", f.ipv4, f.ports, msg)
	}
	return nil
}

// apply sets the b4.Config fields.
func (f *failoverFlags) apply(cfg *b4.Config) {
	cfg.AnnounceGroup = f.announceGroup
	cfg.KeepBinding = f.keepBinding
	if f.staticIPv4.IsValid() {
		cfg.StaticIPv4, cfg.StaticPorts, cfg.StaticSource = f.staticIPv4, f.staticPorts, "static"
	}
	cfg.AllowLoopback = f.allowLoopback
}

// nonce returns the PCP nonce to use: from --nonce-file when given ("none":
// a fresh one, nil), else from the state directory. A nonce that cannot be
// kept is said loudly: after a restart the AFTR refuses the B4 until the
// old binding lapses (RFC 6887 §11.3), unless the delete at shutdown got
// through.
func (f *failoverFlags) nonce(nonceFile, src string, log *slog.Logger) (*[12]byte, error) {
	switch nonceFile {
	case "none":
		return nil, nil
	case "":
	default:
		n, err := loadNonce(nonceFile)
		if err != nil {
			return nil, fmt.Errorf("--nonce-file: %w", err)
		}
		return n, nil
	}
	dir := f.stateDir
	if dir == "" {
		dir = stateDir(os.Getenv)
	}
	if dir == "" {
		log.Warn("PCP nonce NOT kept: no state directory (no --state-dir, $STATE_DIRECTORY, $XDG_STATE_HOME or home); after a restart the AFTR may refuse this B4 until its old binding expires — give --state-dir or set StateDirectory= in the systemd unit")
		return nil, nil
	}
	n, err := loadNonce(nonceFileIn(dir, src))
	if err != nil {
		if f.stateDir != "" {
			return nil, fmt.Errorf("--state-dir: %w", err)
		}
		log.Warn("PCP nonce NOT kept: the state directory is unusable; after a restart the AFTR may refuse this B4 until its old binding expires — give --state-dir or set StateDirectory= in the systemd unit", "dir", dir, "err", err)
		return nil, nil
	}
	return n, nil
}
