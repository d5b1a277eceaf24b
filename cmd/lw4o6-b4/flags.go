package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/lw4o6/lw4o6/internal/cli"

	"github.com/spf13/pflag"
)

// options are the parsed, validated flags.
type options struct {
	tun          string
	tunDriver    string
	tunAddr      netip.Prefix
	tunSetup     bool
	defaultRoute bool
	aftr         string
	ipv6         netip.Addr
	underlay     string
	listen       string
	peer         string
	mtu          int
	portSetSize  int
	lifetime     time.Duration
	maxSets      int
	growAt       float64
	shrinkAfter  time.Duration
	socks5       string
	nonceFile    string
	level        slog.Level
	lan          lanOptions
	dhcp         dhcpOptions // provisioning.go
	failover     failoverFlags
	natQuota     natQuotaFlags // natquota.go
}

const usage = `Usage: lw4o6-b4 [flags]

The lwB4 of Lightweight 4over6 (RFC 7596), provisioned by PCP: it asks the
AFTR for a public IPv4 address and port set (PCP MAP + PORT_SET, through the
softwire), NATs the LAN into that set and tunnels it as IPv4-in-IPv6.

LAN side (at least one):
  --tun utun7            a TUN device (created if absent; needs CAP_NET_ADMIN or root)
  --socks5 127.0.0.1:1080  a SOCKS5 front end: no TUN, no root
Provisioning (--provision, default auto):
  pcp      PCP MAP + PORT_SET through the softwire
  dhcpv6   the RFC 7598 S46 binding from DHCPv6 (OPTION_S46_CONT_LW)
  auto     PCP first; the DHCPv6 S46 binding if the AFTR does not answer PCP
  Without --aftr the B4 asks DHCPv6 on --access-if (Information-Request):
  OPTION_AFTR_NAME (RFC 6334), resolved with the DHCPv6 DNS servers, or S46_BR.
Access side:
  --underlay raw         raw IPv6 socket, next header 4 (standard; needs CAP_NET_RAW)
  --underlay udp         one IPv6 packet per UDP datagram to --underlay-peer (lab only, non-standard)

LAN port mapping: PCP (RFC 6887) and NAT-PMP (RFC 6886) on the gateway's
UDP 5351, from the B4's port set; --forward exposes a LAN service for good.

Examples:
  lw4o6-b4 --aftr 2001:db8::1 --tun lw4o6 --tun-addr 198.18.0.1/24 --tun-setup
  lw4o6-b4 --aftr 2001:db8::1 --tun lw4o6 --tun-addr 198.18.0.1/24 --tun-setup \
      --forward tcp:8080=198.18.0.10:80
  lw4o6-b4 --aftr 2001:db8::1 --ipv6 2001:db8:b4::1 --underlay udp \
      --underlay-peer 127.0.0.1:4666 --socks5 127.0.0.1:1080

Flags:
`

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := pflag.NewFlagSet("lw4o6-b4", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	o := &options{}
	fs.StringVar(&o.tun, "tun", "", "LAN-side TUN device `NAME` (created if absent)")
	fs.StringVar(&o.tunDriver, "tun-driver", "wireguard", "TUN implementation: wireguard or water")
	tunAddr := fs.String("tun-addr", "", "with --tun-setup: the B4's LAN address, `CIDR` (e.g. 198.18.0.1/24)")
	fs.BoolVar(&o.tunSetup, "tun-setup", false, "bring the TUN up with --tun-addr and --mtu (netlink on Linux, system tools on macOS/Windows)")
	fs.BoolVar(&o.defaultRoute, "default-route", false, "with --tun-setup: route 0.0.0.0/0 through the TUN")
	fs.StringVar(&o.aftr, "aftr", "", "the AFTR: IPv6 `ADDR` or a DNS name (resolved to AAAA); default: from DHCPv6 (AFTR-Name or S46_BR)")
	ipv6 := fs.String("ipv6", "", "tunnel source IPv6 `ADDR` (default: source address selection toward the AFTR)")
	fs.StringVar(&o.underlay, "underlay", "raw", "access side: raw (IPv6 next header 4) or udp (lab only)")
	fs.StringVar(&o.listen, "underlay-listen", "", "udp underlay: local `HOST:PORT` (default: any port)")
	fs.StringVar(&o.peer, "underlay-peer", "", "udp underlay: the AFTR's `HOST:PORT`")
	fs.IntVar(&o.mtu, "mtu", 1500, "access-side IPv6 MTU; the LAN MTU is this minus 40")
	fs.IntVar(&o.portSetSize, "port-set-size", 65535, "PORT_SET size asked for (1-65535; 65535 = as many as the AFTR gives)")
	fs.DurationVar(&o.lifetime, "lifetime", 2*time.Hour, "binding lifetime asked for")
	fs.IntVar(&o.maxSets, "max-sets", 4, "most port sets to hold: more are asked for when the NAT fills (docs/port-sets.md); 1: one set")
	fs.Float64Var(&o.growAt, "grow-at", 0.8, "ask for one more port set when mappings use this share of the ports held (0-1]")
	fs.DurationVar(&o.shrinkAfter, "shrink-after", 3*time.Minute, "give back an added port set unused for this long")
	fs.StringVar(&o.socks5, "socks5", "", "serve SOCKS5 (CONNECT, UDP ASSOCIATE) on `ADDR` as an unprivileged LAN front end")
	fs.StringVar(&o.nonceFile, "nonce-file", "", "keep the PCP nonce in `FILE` so renewals after a restart are accepted (default: in --state-dir; \"none\": a fresh nonce each start)")
	o.failover.register(fs)
	o.natQuota.register(fs)
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	lanFlags := addLANFlags(fs)
	o.dhcp.register(fs)
	version := cli.VersionFlag(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, cli.ErrHelp
		}
		return nil, fmt.Errorf("%v (see --help)", err)
	}
	if *version {
		return nil, cli.ErrVersion
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	if err := o.level.UnmarshalText([]byte(*level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", *level)
	}
	if o.tun == "" && o.socks5 == "" {
		return nil, errors.New("no LAN side: give --tun NAME, --socks5 ADDR, or both")
	}
	switch o.tunDriver {
	case "wireguard", "water":
	default:
		return nil, fmt.Errorf("--tun-driver %q: want wireguard or water", o.tunDriver)
	}
	if *tunAddr != "" {
		p, err := netip.ParsePrefix(*tunAddr)
		if err != nil || !p.Addr().Is4() {
			return nil, fmt.Errorf("--tun-addr %q: want an IPv4 CIDR such as 198.18.0.1/24", *tunAddr)
		}
		o.tunAddr = p
	}
	if o.tunSetup && (o.tun == "" || !o.tunAddr.IsValid()) {
		return nil, errors.New("--tun-setup needs --tun and --tun-addr")
	}
	if o.defaultRoute && !o.tunSetup {
		return nil, errors.New("--default-route needs --tun-setup")
	}
	if *ipv6 != "" {
		a, err := netip.ParseAddr(*ipv6)
		if err != nil || !a.Is6() || a.Is4In6() {
			return nil, fmt.Errorf("--ipv6 %q: want an IPv6 address", *ipv6)
		}
		o.ipv6 = a
	}
	switch o.underlay {
	case "raw":
		if o.peer != "" || o.listen != "" {
			return nil, errors.New("--underlay-peer and --underlay-listen go with --underlay udp")
		}
	case "udp":
		if o.peer == "" {
			return nil, errors.New("--underlay udp needs --underlay-peer HOST:PORT (the AFTR's UDP underlay)")
		}
		if _, err := net.ResolveUDPAddr("udp", o.peer); err != nil {
			return nil, fmt.Errorf("--underlay-peer %q: %v", o.peer, err)
		}
	default:
		return nil, fmt.Errorf("--underlay %q: want raw or udp", o.underlay)
	}
	if o.mtu < 1280 || o.mtu > 65535 {
		return nil, fmt.Errorf("--mtu %d: want 1280 (the IPv6 minimum) to 65535", o.mtu)
	}
	if o.portSetSize < 1 || o.portSetSize > 65535 {
		return nil, fmt.Errorf("--port-set-size %d: want 1 to 65535", o.portSetSize)
	}
	if o.maxSets < 1 || o.maxSets > 16 {
		return nil, fmt.Errorf("--max-sets %d: want 1 to 16", o.maxSets)
	}
	if !(o.growAt > 0 && o.growAt <= 1) {
		return nil, fmt.Errorf("--grow-at %v: want a share in (0, 1]", o.growAt)
	}
	if o.shrinkAfter < time.Second {
		return nil, fmt.Errorf("--shrink-after %v: want 1s or more", o.shrinkAfter)
	}
	if o.lifetime < 2*time.Minute || o.lifetime > 24*time.Hour {
		return nil, fmt.Errorf("--lifetime %v: want 2m to 24h (RFC 6887 §15)", o.lifetime)
	}
	if o.socks5 != "" {
		if _, err := net.ResolveTCPAddr("tcp", o.socks5); err != nil {
			return nil, fmt.Errorf("--socks5 %q: %v", o.socks5, err)
		}
	}
	var err error
	if o.lan, err = lanFlags.parse(o.tunAddr); err != nil {
		return nil, err
	}
	if err := o.failover.check(); err != nil {
		return nil, err
	}
	if err := o.natQuota.check(o.tun == ""); err != nil {
		return nil, err
	}
	if err := o.dhcp.check(o); err != nil {
		return nil, err
	}
	return o, nil
}

// resolveAFTR turns --aftr into an address: a literal, or a DNS name
// resolved to AAAA (RFC 6334 §3: use one of the addresses).
func resolveAFTR(ctx context.Context, s string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		if !a.Is6() || a.Is4In6() {
			return netip.Addr{}, fmt.Errorf("--aftr %s is not an IPv6 address", s)
		}
		return a, nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip6", s)
	if err != nil || len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("--aftr %s: no AAAA record: %v", s, err)
	}
	return addrs[0], nil
}

// sourceFor picks the tunnel source by the host's source address
// selection: a connected UDP socket sends nothing but learns its address.
func sourceFor(aftr netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp6", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(aftr, 9)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("no IPv6 route to the AFTR %v (give --ipv6): %v", aftr, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr(), nil
}
