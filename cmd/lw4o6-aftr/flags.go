package main

import (
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

type options struct {
	ipv6        []netip.Addr
	ipv4        netip.Addr
	underlay    string
	listen      string
	ipv4Side    string // "host" or "tun"
	tunName     string
	tunAddr     netip.Prefix
	pools       []netip.Prefix
	portsPerB4  int
	lifetimeMin time.Duration
	lifetimeMax time.Duration
	icmpOnFail  bool
	hairpin     bool
	mtu         int
	loopback    bool
	bindings    string
	profile     string
	quota       int
	quotaLen    int
	// Provisioning and failover (issue 7).
	provisioners    []netip.Prefix
	provisionListen string
	announce        bool
	announceGroup   netip.Addr
	stateDir        string
	maxSets         int
	// PCP request rate limits (issue 11 item 6).
	pcpRate       int
	pcpRatePerB4  float64
	pcpBurstPerB4 int
	// changed records the flags given explicitly: they override what a
	// --bindings file says.
	changed map[string]bool
	level   slog.Level
}

const usage = `Usage: lw4o6-aftr [flags]
       lw4o6-aftr check --help
       lw4o6-aftr provision --help
       lw4o6-aftr reload --help   (re-read --bindings; also on SIGHUP)

The lwAFTR of Lightweight 4over6 (RFC 7596), provisioning B4s by PCP: B4s
send PCP MAP + PORT_SET through their softwire to 192.0.0.1; the AFTR
allocates an IPv4 address and port set from --pool, installs the binding,
and forwards their checked IPv4-in-IPv6 traffic.

Access side:  --underlay raw (IPv6 next header 4; CAP_NET_RAW) or udp (lab only)
              The udp underlay is not authenticated: a B4's UDP endpoint is
              bound when its PCP MAP succeeds and moves only on another
              successful MAP, but a B4 with a static binding is learned from
              any datagram, and whoever wins a B4's PCP binding (its nonce)
              gets its traffic. Keep it on a network you trust.
Internet side: --ipv4-side host (unprivileged: flows re-originated from host
               sockets) or tun:NAME (a TUN; CAP_NET_ADMIN)

Example (unprivileged laptop lab):
  lw4o6-aftr --ipv6 2001:db8::1 --underlay udp --underlay-listen 127.0.0.1:4666 \
      --ipv4-side host --pool 192.0.2.0/30

Flags:
`

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := pflag.NewFlagSet("lw4o6-aftr", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	o := &options{}
	ipv6 := fs.StringArray("ipv6", nil, "the AFTR's IPv6 (BR) `ADDR`; repeatable, the first one answers PCP (required)")
	ipv4 := fs.String("ipv4", "", "the AFTR's own public IPv4 `ADDR`, the source of the ICMPv4 errors it sends (optional)")
	fs.StringVar(&o.underlay, "underlay", "raw", "access side: raw (IPv6 next header 4) or udp (lab only)")
	fs.StringVar(&o.listen, "underlay-listen", "", "udp underlay: local `HOST:PORT` to receive B4s' datagrams on")
	side := fs.String("ipv4-side", "host", "Internet side: host (host sockets, unprivileged) or tun:NAME")
	tunAddr := fs.String("tun-addr", "", "with --ipv4-side tun: bring the TUN up with this IPv4 `CIDR` and route the pools through it")
	pools := fs.StringArray("pool", nil, "IPv4 `CIDR` to hand out to B4s; repeatable (required)")
	fs.IntVar(&o.portsPerB4, "ports-per-b4", 2048, "port-set size per B4: a power of two from 64 to 32768")
	fs.DurationVar(&o.lifetimeMin, "lifetime-min", 2*time.Minute, "shortest binding lifetime granted (RFC 6887 §15: 120 s)")
	fs.DurationVar(&o.lifetimeMax, "lifetime-max", 24*time.Hour, "longest binding lifetime granted")
	fs.BoolVar(&o.icmpOnFail, "icmp-on-fail", true, "send ICMPv6 1/5 to a B4 whose packet matches no binding (RFC 7596 §6.2)")
	fs.BoolVar(&o.hairpin, "hairpinning", true, "hairpin traffic between B4s (RFC 7596 §6.2)")
	fs.IntVar(&o.mtu, "mtu", 1500, "access-side IPv6 MTU")
	fs.BoolVar(&o.loopback, "egress-allow-loopback", false, "with --ipv4-side host: let B4s reach this host's loopback (lab use only)")
	fs.IntVar(&o.quota, "quota-per-prefix", 16, "most PCP bindings for the B4 addresses of one subscriber prefix (0: no quota)")
	fs.IntVar(&o.quotaLen, "quota-prefix-len", 56, "subscriber prefix length the quota counts by (a typical delegation: /56)")
	fs.IntVar(&o.maxSets, "max-sets-per-b4", 4, "most port sets one B4 holds: its first and those it asks for under load (docs/port-sets.md); 1: one set per B4")
	fs.IntVar(&o.pcpRate, "pcp-rate", 20000, "most PCP requests from B4s handled per second, all together; more are dropped unanswered, counted (0: no limit)")
	fs.Float64Var(&o.pcpRatePerB4, "pcp-rate-per-b4", 2, "most PCP requests handled per second from the B4s of one /64 (0: no limit)")
	fs.IntVar(&o.pcpBurstPerB4, "pcp-burst-per-b4", 10, "PCP requests one /64 may send at once within --pcp-rate-per-b4 (0: 5 s worth)")
	fs.StringVar(&o.bindings, "bindings", "", "static bindings and interface settings from a Snabb lwAFTR softwire-config `FILE`, read as is (explicit flags override its settings)")
	fs.StringVar(&o.profile, "profile", "rfc", "knob set: rfc (RFC-sound defaults) or snabb (behave as Snabb lwAFTR: hop limit 255, its TTL and ICMP choices, sequential fragment IDs)")
	provisioners := fs.StringArray("provisioner", nil, "`PREFIX` of provisioning systems allowed to manage a named B4's binding with PCP THIRD_PARTY over plain UDP to port 5351 (repeatable; RFC 6887 §13.1: trusted networks only); others get no answer")
	fs.StringVar(&o.provisionListen, "provision-listen", "", "host UDP socket `ADDR:PORT` (e.g. [2001:db8::1]:5351) answering provisioning systems; off by default (the udp underlay also carries their PCP)")
	fs.BoolVar(&o.announce, "announce", true, "after a start without restored state: reset the PCP Epoch and send ANNOUNCE to B4s that turn up without a binding and to --announce-group (RFC 6887 §14.1.3)")
	announceGroup := fs.String("announce-group", "", "IPv6 multicast `GROUP` on the access network (e.g. ff02::1) the ANNOUNCEs also go to")
	fs.StringVar(&o.stateDir, "state-dir", defaultStateDir(), "`DIR` of the binding journal: PCP bindings survive a restart (\"\": no journal, a restart loses them)")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
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
	o.changed = map[string]bool{}
	fs.Visit(func(f *pflag.Flag) { o.changed[f.Name] = true })
	if o.quota < 0 {
		return nil, fmt.Errorf("--quota-per-prefix %d: want 0 (no quota) or more", o.quota)
	}
	if o.quotaLen < 1 || o.quotaLen > 128 {
		return nil, fmt.Errorf("--quota-prefix-len %d: want 1 to 128", o.quotaLen)
	}
	for _, s := range *provisioners {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("--provisioner %q: want a prefix such as 2001:db8:ff::/64 or an address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		o.provisioners = append(o.provisioners, p.Masked())
	}
	if o.provisionListen != "" {
		if len(o.provisioners) == 0 {
			return nil, errors.New("--provision-listen needs --provisioner PREFIX: nobody would be answered")
		}
		if _, err := netip.ParseAddrPort(o.provisionListen); err != nil {
			return nil, fmt.Errorf("--provision-listen %q: want ADDR:PORT such as [2001:db8::1]:5351", o.provisionListen)
		}
	}
	if *announceGroup != "" {
		g, err := netip.ParseAddr(*announceGroup)
		if err != nil || !g.Is6() || !g.IsMulticast() {
			return nil, fmt.Errorf("--announce-group %q: want an IPv6 multicast group such as ff02::1", *announceGroup)
		}
		o.announceGroup = g
	}
	if o.pcpRate < 0 || o.pcpBurstPerB4 < 0 || !(o.pcpRatePerB4 >= 0 && o.pcpRatePerB4 <= 1e9) {
		return nil, fmt.Errorf("--pcp-rate %d / --pcp-rate-per-b4 %v / --pcp-burst-per-b4 %d: want 0 (no limit) or more", o.pcpRate, o.pcpRatePerB4, o.pcpBurstPerB4)
	}
	if o.maxSets < 1 || o.maxSets > 1023 {
		return nil, fmt.Errorf("--max-sets-per-b4 %d: want 1 to 1023", o.maxSets)
	}
	if o.profile != "rfc" && o.profile != "snabb" {
		return nil, fmt.Errorf("--profile %q: want rfc or snabb", o.profile)
	}
	if len(*ipv6) == 0 {
		return nil, errors.New("--ipv6 is required: the AFTR's IPv6 address")
	}
	for _, s := range *ipv6 {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is6() || a.Is4In6() || a.IsMulticast() || a.IsUnspecified() {
			return nil, fmt.Errorf("--ipv6 %q: want a unicast IPv6 address", s)
		}
		o.ipv6 = append(o.ipv6, a)
	}
	if *ipv4 != "" {
		a, err := netip.ParseAddr(*ipv4)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("--ipv4 %q: want an IPv4 address", *ipv4)
		}
		o.ipv4 = a
	}
	if len(*pools) == 0 && o.bindings == "" {
		return nil, errors.New("--pool is required (unless --bindings gives static bindings): an IPv4 CIDR to hand out, e.g. 192.0.2.0/30")
	}
	for _, s := range *pools {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return nil, fmt.Errorf("--pool %q: want an IPv4 CIDR such as 192.0.2.0/30", s)
		}
		o.pools = append(o.pools, p.Masked())
	}
	if n := o.portsPerB4; n < 64 || n > 32768 || n&(n-1) != 0 {
		return nil, fmt.Errorf("--ports-per-b4 %d: want a power of two from 64 to 32768", n)
	}
	if o.lifetimeMin < time.Second || o.lifetimeMax < o.lifetimeMin {
		return nil, fmt.Errorf("--lifetime-min %v / --lifetime-max %v: want 1s <= min <= max", o.lifetimeMin, o.lifetimeMax)
	}
	switch {
	case *side == "host":
		o.ipv4Side = "host"
	case strings.HasPrefix(*side, "tun:") && len(*side) > 4:
		o.ipv4Side, o.tunName = "tun", strings.TrimPrefix(*side, "tun:")
	default:
		return nil, fmt.Errorf("--ipv4-side %q: want host or tun:NAME", *side)
	}
	if *tunAddr != "" {
		if o.ipv4Side != "tun" {
			return nil, errors.New("--tun-addr goes with --ipv4-side tun:NAME")
		}
		p, err := netip.ParsePrefix(*tunAddr)
		if err != nil || !p.Addr().Is4() {
			return nil, fmt.Errorf("--tun-addr %q: want an IPv4 CIDR", *tunAddr)
		}
		o.tunAddr = p
	}
	if o.loopback && o.ipv4Side != "host" {
		return nil, errors.New("--egress-allow-loopback goes with --ipv4-side host")
	}
	switch o.underlay {
	case "raw":
		if o.listen != "" {
			return nil, errors.New("--underlay-listen goes with --underlay udp")
		}
	case "udp":
		if o.listen == "" {
			return nil, errors.New("--underlay udp needs --underlay-listen HOST:PORT")
		}
		if _, err := net.ResolveUDPAddr("udp", o.listen); err != nil {
			return nil, fmt.Errorf("--underlay-listen %q: %v", o.listen, err)
		}
	default:
		return nil, fmt.Errorf("--underlay %q: want raw or udp", o.underlay)
	}
	if o.mtu < 1280 || o.mtu > 65535 {
		return nil, fmt.Errorf("--mtu %d: want 1280 to 65535", o.mtu)
	}
	return o, nil
}
