package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/lw4o6/lw4o6/internal/cli"
	"github.com/lw4o6/lw4o6/stack/pcp"
	"github.com/spf13/pflag"
)

const provisionUsage = `Usage: lw4o6-aftr provision --server ADDR --b4 IPV6 [--ipv4 A --ports N-M | --size N]
                            [--lifetime D | --delete] [--timeout D]

Installs, renews, shows (a renewal returns the binding) or deletes the
binding of the B4 whose IPv6 address is --b4, as a provisioning system: a
PCP MAP with THIRD_PARTY (RFC 6887 §13.1) and PORT_SET (RFC 7753) over
plain UDP to the AFTR, retransmitted as RFC 6887 §8.1.1 says until it is
answered or --timeout passes. The AFTR answers only sources inside its
--provisioner prefixes, on --provision-listen (or through the udp
underlay); anyone else gets no answer, which shows here as a timeout.

A live binding is renewed as it is, whatever --ipv4 and --ports say: delete
it first to move a B4. --ipv4 and --ports suggest a set; the AFTR grants
aligned power-of-two blocks, and when it grants another set than asked the
binding is installed, printed, and the command exits 1.

Example:
  lw4o6-aftr provision --server 2001:db8::1 --b4 2001:db8:b::1 \
      --ipv4 192.0.2.8 --ports 4096-6143 --lifetime 24h

Flags:
`

// runProvision is `lw4o6-aftr provision`.
func runProvision(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("lw4o6-aftr provision", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, provisionUsage); fs.PrintDefaults() }
	var o provisionOptions
	fs.StringVar(&o.server, "server", "", "the AFTR: `ADDR` (port 5351) or [ADDR]:PORT (required)")
	fs.StringVar(&o.b4, "b4", "", "the B4's IPv6 `ADDR` whose binding this is (required)")
	fs.StringVar(&o.ipv4, "ipv4", "", "suggested public IPv4 `ADDR`")
	fs.StringVar(&o.ports, "ports", "", "suggested port set `N-M` (first port and size)")
	fs.IntVar(&o.size, "size", 0, "ports asked for, without a suggested set (default: as many as the AFTR gives)")
	fs.DurationVar(&o.lifetime, "lifetime", 24*time.Hour, "binding lifetime asked for (the AFTR clamps it)")
	fs.BoolVar(&o.delete, "delete", false, "delete the B4's binding")
	fs.DurationVar(&o.timeout, "timeout", 15*time.Second, "give up when no answer came by then")
	version := cli.VersionFlag(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "lw4o6-aftr provision: %v (see --help)\n", err)
		return 2
	}
	if *version {
		return cli.PrintVersion(stdout, "lw4o6-aftr provision")
	}
	o.changed = map[string]bool{}
	fs.Visit(func(f *pflag.Flag) { o.changed[f.Name] = true })
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lw4o6-aftr provision: unexpected argument %q (see --help)\n", fs.Arg(0))
		return 2
	}
	req, server, err := o.request()
	if err != nil {
		fmt.Fprintf(stderr, "lw4o6-aftr provision: %v (see --help)\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	if err := provision(ctx, server, req, stdout); err != nil {
		fmt.Fprintf(stderr, "lw4o6-aftr provision: %v\n", err)
		return 1
	}
	return 0
}

type provisionOptions struct {
	server, b4, ipv4, ports string
	size                    int
	lifetime, timeout       time.Duration
	delete                  bool
	changed                 map[string]bool
}

// request checks the flags and builds the MAP request.
func (o *provisionOptions) request() (pcp.MapRequest, netip.AddrPort, error) {
	var req pcp.MapRequest
	server, err := netip.ParseAddrPort(o.server)
	if err != nil {
		a, aerr := netip.ParseAddr(o.server)
		if aerr != nil {
			return req, server, fmt.Errorf("--server %q: want ADDR or [ADDR]:PORT", o.server)
		}
		server = netip.AddrPortFrom(a, pcp.ServerPort)
	}
	b4, err := netip.ParseAddr(o.b4)
	if err != nil || !b4.Is6() || b4.Is4In6() || b4.IsMulticast() || b4.IsUnspecified() {
		return req, server, fmt.Errorf("--b4 %q: want the B4's unicast IPv6 address", o.b4)
	}
	if o.timeout <= 0 {
		return req, server, fmt.Errorf("--timeout %v: want more than 0", o.timeout)
	}
	req.ThirdParty = b4
	req.SuggestedIP = netip.IPv4Unspecified() // an IPv4 mapping (RFC 6887 §5)
	if o.delete {
		for _, f := range []string{"ipv4", "ports", "size", "lifetime"} {
			if o.changed[f] {
				return req, server, fmt.Errorf("--delete goes without --%s", f)
			}
		}
		req.PortSet = &pcp.PortSet{Size: math.MaxUint16}
		return req, server, nil
	}
	if o.lifetime < time.Second || o.lifetime > math.MaxUint32*time.Second {
		return req, server, fmt.Errorf("--lifetime %v: want 1s or more (use --delete to delete)", o.lifetime)
	}
	req.Lifetime = uint32(o.lifetime / time.Second)
	size := math.MaxUint16 // as many as allowed (RFC 7753 §4)
	if o.ipv4 != "" {
		a, err := netip.ParseAddr(o.ipv4)
		if err != nil || !a.Is4() || a.IsUnspecified() {
			return req, server, fmt.Errorf("--ipv4 %q: want an IPv4 address", o.ipv4)
		}
		req.SuggestedIP = a
	}
	switch {
	case o.ports != "" && o.changed["size"]:
		return req, server, errors.New("--ports and --size exclude each other")
	case o.ports != "":
		first, last, err := parsePorts(o.ports)
		if err != nil {
			return req, server, err
		}
		req.SuggestedPort, size = first, int(last-first)+1
	case o.changed["size"]:
		if o.size < 1 || o.size > math.MaxUint16 {
			return req, server, fmt.Errorf("--size %d: want 1 to 65535", o.size)
		}
		size = o.size
	}
	req.PortSet = &pcp.PortSet{Size: uint16(size)}
	return req, server, nil
}

func parsePorts(s string) (uint16, uint16, error) {
	lo, hi, ok := strings.Cut(s, "-")
	a, err1 := strconv.ParseUint(lo, 10, 16)
	b, err2 := strconv.ParseUint(hi, 10, 16)
	if !ok || err1 != nil || err2 != nil || a == 0 || b < a || b-a+1 > math.MaxUint16 {
		return 0, 0, fmt.Errorf("--ports %q: want N-M with 1 <= N <= M <= 65535", s)
	}
	return uint16(a), uint16(b), nil
}

// provision sends req to server with the PCP client and prints the
// outcome; it fails on an error result, on no answer before ctx ends, and
// when the set granted is not the one suggested.
func provision(ctx context.Context, server netip.AddrPort, req pcp.MapRequest, stdout io.Writer) error {
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(server))
	if err != nil {
		return err
	}
	defer conn.Close()
	c := pcp.NewClient(conn, pcp.ClientConfig{})
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(runCtx) }()
	defer func() { stop(); <-done }()

	m, err := c.Map(ctx, req)
	var re *pcp.ResultError
	switch {
	case errors.As(err, &re):
		return fmt.Errorf("the AFTR at %v refused: %v (lifetime %d s)", server, re.Code, re.Lifetime)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer from %v: is it listening (--provision-listen), and is this host (%v) inside its --provisioner prefixes?", server, c.ClientIP())
	case err != nil:
		return err
	}
	if req.Lifetime == 0 {
		fmt.Fprintf(stdout, "B4 %v: binding deleted\n", req.ThirdParty)
		return nil
	}
	if m.PortSet == nil {
		return fmt.Errorf("the AFTR at %v granted %v port %d without a port set", server, m.ExternalIP, m.ExternalPort)
	}
	first, size := m.PortSet.FirstInternalPort, int(m.PortSet.Size)
	fmt.Fprintf(stdout, "B4 %v: IPv4 %v ports %d-%d (%d) lifetime %v\n",
		req.ThirdParty, m.ExternalIP.Unmap(), first, first+uint16(size-1), size, m.Lifetime)
	if s := req.SuggestedIP.Unmap(); !s.IsUnspecified() && s != m.ExternalIP.Unmap() ||
		req.SuggestedPort != 0 && (req.SuggestedPort != first || int(req.PortSet.Size) != size) {
		return fmt.Errorf("installed, but not as asked (%v ports %d+%d): delete it with --delete if unwanted", s, req.SuggestedPort, req.PortSet.Size)
	}
	return nil
}
