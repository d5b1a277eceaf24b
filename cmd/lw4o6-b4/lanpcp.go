package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/lw4o6/lw4o6/b4"
	"github.com/lw4o6/lw4o6/b4/lanpcp"

	"github.com/spf13/pflag"
	"golang.org/x/net/ipv4"
)

// The LAN port-mapping server's flags and host sockets. In TUN mode the LAN
// hosts' gateway is an address of this host, so requests to it:5351 arrive
// on host sockets, not through the TUN; the B4's Server answers them here.

type lanOptions struct {
	off        bool         // --lan-pcp none: no host sockets
	addrs      []netip.Addr // host sockets (TUN mode)
	thirdParty []netip.Prefix
	forwards   []lanpcp.Forward
}

type lanFlags struct {
	pcp, thirdParty, forward []string
}

func addLANFlags(fs *pflag.FlagSet) *lanFlags {
	f := &lanFlags{}
	fs.StringArrayVar(&f.pcp, "lan-pcp", nil, "serve PCP and NAT-PMP on host `ADDR`:5351, announcing on its interface (repeatable; default: the --tun-addr address; \"none\": no host sockets)")
	fs.StringArrayVar(&f.thirdParty, "lan-pcp-third-party", nil, "LAN hosts in `PREFIX` may use PCP THIRD_PARTY (repeatable; default: nobody)")
	fs.StringArrayVar(&f.forward, "forward", nil, "static forward `tcp:PORT=LANHOST:PORT` (or udp:...) from the public address (repeatable)")
	return f
}

func (f *lanFlags) parse(tunAddr netip.Prefix) (lanOptions, error) {
	var o lanOptions
	for _, s := range f.pcp {
		if s == "none" {
			o.off = true
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() || a.IsUnspecified() || a.IsMulticast() {
			return o, fmt.Errorf("--lan-pcp %q: want this host's IPv4 address on the LAN", s)
		}
		o.addrs = append(o.addrs, a)
	}
	if len(o.addrs) > 0 && o.off {
		return o, errors.New("--lan-pcp none with addresses")
	}
	if len(o.addrs) == 0 && tunAddr.IsValid() && !o.off {
		o.addrs = []netip.Addr{tunAddr.Addr()}
	}
	for _, s := range f.thirdParty {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return o, fmt.Errorf("--lan-pcp-third-party %q: want an IPv4 prefix such as 198.18.0.0/24", s)
		}
		o.thirdParty = append(o.thirdParty, p.Masked())
	}
	seen := map[[2]string]bool{}
	for _, s := range f.forward {
		fw, err := parseForward(s)
		if err != nil {
			return o, err
		}
		k := [2]string{fmt.Sprint(fw.Proto), fw.Internal.String()}
		if seen[k] {
			return o, fmt.Errorf("--forward %q: %v is forwarded twice", s, fw.Internal)
		}
		seen[k] = true
		o.forwards = append(o.forwards, fw)
	}
	return o, nil
}

// parseForward reads tcp:PORT=LANHOST:PORT (or udp:).
func parseForward(s string) (lanpcp.Forward, error) {
	bad := fmt.Errorf("--forward %q: want tcp:PORT=LANHOST:PORT or udp:PORT=LANHOST:PORT (e.g. tcp:8080=198.18.0.10:80)", s)
	proto, rest, ok := strings.Cut(s, ":")
	ext, lan, ok2 := strings.Cut(rest, "=")
	if !ok || !ok2 {
		return lanpcp.Forward{}, bad
	}
	var fw lanpcp.Forward
	switch strings.ToLower(proto) {
	case "tcp":
		fw.Proto = 6
	case "udp":
		fw.Proto = 17
	default:
		return fw, bad
	}
	p, err := strconv.ParseUint(ext, 10, 16)
	if err != nil || p == 0 {
		return fw, bad
	}
	fw.External = uint16(p)
	ap, err := netip.ParseAddrPort(lan)
	if err != nil || !ap.Addr().Is4() || ap.Addr().IsUnspecified() || ap.Addr().IsMulticast() || ap.Port() == 0 {
		return fw, bad
	}
	fw.Internal = ap
	return fw, nil
}

func (o lanOptions) apply(cfg *b4.Config) {
	cfg.LANPCP.ThirdParty = o.thirdParty
	cfg.LANPCP.Static = o.forwards
}

// startLANPCP serves srv on addr:5351 for each host address: answers go
// back from the same socket, announcements go to 224.0.0.1:5350 out of the
// address's interface (IP_MULTICAST_IF), TTL 1.
func startLANPCP(addrs []netip.Addr, srv *lanpcp.Server, log *slog.Logger) (stop func(), err error) {
	var stops []func()
	stop = func() {
		for _, f := range stops {
			f()
		}
	}
	for _, a := range addrs {
		s, err := listenLANPCP(a, srv, log)
		if err != nil {
			stop()
			return nil, err
		}
		stops = append(stops, s)
	}
	return stop, nil
}

func listenLANPCP(a netip.Addr, srv *lanpcp.Server, log *slog.Logger) (func(), error) {
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, lanpcp.ServerPort)))
	if err != nil {
		return nil, fmt.Errorf("--lan-pcp %v: %w", a, err)
	}
	pc := ipv4.NewPacketConn(conn)
	if ifi := interfaceOf(a); ifi != nil {
		if err := pc.SetMulticastInterface(ifi); err != nil {
			log.Warn("LAN PCP: announcements may leave by the wrong interface", "addr", a, "err", err)
		}
	} else {
		log.Warn("LAN PCP: no interface holds the address; announcements use the default", "addr", a)
	}
	pc.SetMulticastTTL(1)
	group := net.UDPAddrFromAddrPort(lanpcp.AnnounceGroup)
	var mu sync.Mutex // one writer at a time: answers and announcements
	unsub := srv.Subscribe(func(p []byte) {
		mu.Lock()
		defer mu.Unlock()
		if _, err := conn.WriteToUDP(p, group); err != nil {
			log.Debug("LAN PCP announcement", "addr", a, "err", err)
		}
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, src, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if resp := srv.Handle(buf[:n], src); resp != nil {
				mu.Lock()
				conn.WriteToUDPAddrPort(resp, src)
				mu.Unlock()
			}
		}
	}()
	log.Info("LAN PCP and NAT-PMP server ready", "addr", netip.AddrPortFrom(a, lanpcp.ServerPort))
	return func() { unsub(); conn.Close(); <-done }, nil
}

// interfaceOf is the interface that holds address a, or nil.
func interfaceOf(a netip.Addr) *net.Interface {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	for i := range ifs {
		addrs, err := ifs[i].Addrs()
		if err != nil {
			continue
		}
		for _, x := range addrs {
			if n, ok := x.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == a {
					return &ifs[i]
				}
			}
		}
	}
	return nil
}

// printForwards writes one line per static forward with the public
// address and port it got.
func printForwards(w io.Writer, st b4.Status) {
	for _, f := range st.Forwards {
		proto := map[uint8]string{6: "tcp", 17: "udp"}[f.Proto]
		switch {
		case f.Err != nil:
			fmt.Fprintf(w, "forward %s %d -> %v not installed: %v\n", proto, f.Forward.External, f.Internal, f.Err)
		case f.External != f.Forward.External:
			fmt.Fprintf(w, "forward %s %v:%d -> %v (port %d is outside the set %v or taken)\n", proto, st.PublicIPv4, f.External, f.Internal, f.Forward.External, st.Ports)
		default:
			fmt.Fprintf(w, "forward %s %v:%d -> %v\n", proto, st.PublicIPv4, f.External, f.Internal)
		}
	}
}
