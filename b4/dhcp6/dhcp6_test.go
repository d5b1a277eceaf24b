package dhcp6

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"

	"github.com/lw4o6/lw4o6/stack/portset"
)

func name(s string) []byte { return AppendName(nil, s) }

// The B4 asks for AFTR-Name, DNS servers and S46_CONT_LW, takes the name
// and resolves it with the DNS server the Reply names.
func TestAFTRNameResolvedWithReplyDNS(t *testing.T) {
	dns := startDNS(t, map[string]netip.Addr{"aftr.example.net.": netip.MustParseAddr("2001:db8::64")}, 300)
	dnsAddr := dns.addr.Addr().As16()
	srv := startServer(t, func(int) ([][]byte, bool) {
		return [][]byte{opt(OptAFTRName, name("AFTR.example.net")), opt(OptDNSServers, dnsAddr[:])}, false
	})
	log, lb := newLog()
	w := &Watcher{Client: srv.client(t, log), DNSPort: dns.addr.Port(), Logger: log}
	r, err := w.Get(ctxFor(t, 20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if r.Info.AFTRName != "aftr.example.net" || r.AFTR != netip.MustParseAddr("2001:db8::64") || r.NameErr != nil {
		t.Fatalf("got name %q aftr %v err %v", r.Info.AFTRName, r.AFTR, r.NameErr)
	}
	if r.TTL != 300*time.Second || r.Info.Refresh != IRTDefault {
		t.Errorf("ttl %v refresh %v, want 5m0s and the default 24h", r.TTL, r.Info.Refresh)
	}
	req := srv.requests()[0]
	oro := req.Options.RequestedOptions()
	for _, c := range []dhcpv6.OptionCode{OptAFTRName, OptDNSServers, OptS46ContLW} {
		if !slices.Contains(oro, c) {
			t.Errorf("ORO %v lacks %v", oro, c)
		}
	}
	if req.Options.GetOne(dhcpv6.OptionElapsedTime) == nil {
		t.Error("no Elapsed Time option (RFC 8415 §21.9: MUST)")
	}
	if !strings.Contains(lb.String(), "AFTR-Name resolved") {
		t.Errorf("log lacks the resolution:\n%s", lb)
	}
}

// RFC 7598 provisioning: the container's BR, IPv4 address, port set and
// binding prefix become the B4's binding.
func TestS46Provisioning(t *testing.T) {
	for _, c := range []struct {
		name   string
		bind   []byte
		ports  portset.Range
		source string
	}{
		// a = 0, k = 6, PSID 5: ports 5120-6143; /64 prefix → Figure 3.
		{"prefix", bindOpt("192.0.2.5", "2001:db8:b4::/64", portParams(0, 6, 5<<10)), portset.Range{First: 5120, Size: 1024}, "2001:db8:b4::c000:205:5"},
		// /128: the address itself.
		{"address", bindOpt("198.51.100.7", "2001:db8:a::2/128", portParams(0, 4, 0xf000)), portset.Range{First: 61440, Size: 4096}, "2001:db8:a::2"},
		// No PORTPARAMS: the whole address.
		{"full", bindOpt("203.0.113.9", "2001:db8:a::2/128", nil), portset.Range{First: 0, Size: 65536}, "2001:db8:a::2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := startServer(t, func(int) ([][]byte, bool) {
				return [][]byte{opt(OptS46ContLW, brOpt("2001:db8::1"), c.bind)}, false
			})
			info, err := srv.client(t, nil).Ask(ctxFor(t, 20*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if len(info.Refused) > 0 || info.LW == nil {
				t.Fatalf("refused %v, lw %v", info.Refused, info.LW)
			}
			lw := info.LW
			ports, err := lw.Ports()
			if err != nil {
				t.Fatal(err)
			}
			if lw.BR != netip.MustParseAddr("2001:db8::1") || ports != c.ports || lw.TunnelSource() != netip.MustParseAddr(c.source) {
				t.Errorf("got %v ports %v source %v; want ports %v source %s", lw, ports, lw.TunnelSource(), c.ports, c.source)
			}
		})
	}
}

// Hostile or malformed options are refused, each with a log line naming
// the reason; the rest of the Reply is still used.
func TestHostileOptionsRefused(t *testing.T) {
	good := bindOpt("192.0.2.5", "2001:db8:a::2/128", portParams(0, 6, 5<<10))
	for _, c := range []struct {
		name string
		opt  []byte
		want string
	}{
		{"fqdn compression", opt(OptAFTRName, []byte{4, 'a', 'f', 't', 'r', 0xc0, 12}), "compression"},
		{"fqdn underscore", opt(OptAFTRName, name("af_tr.example.net")), "not a letter, digit or hyphen"},
		{"fqdn hyphen", opt(OptAFTRName, name("-aftr.example.net")), "hyphen"},
		{"fqdn long label", opt(OptAFTRName, name(strings.Repeat("a", 64)+".net")), "label type"},
		{"fqdn unterminated", opt(OptAFTRName, []byte{4, 'a', 'f', 't', 'r'}), "not terminated"},
		{"fqdn past option", opt(OptAFTRName, []byte{9, 'a', 'f', 't', 'r', 0}), "runs past"},
		{"fqdn root only", opt(OptAFTRName, []byte{0, 0, 0, 0}), "no label"},
		{"fqdn short", opt(OptAFTRName, []byte{1, 'a', 0}), "must be > 3"},
		{"fqdn too long", opt(OptAFTRName, name(strings.Repeat(strings.Repeat("a", 63)+".", 4)+"net")), "more than 255"},
		{"no BR", opt(OptS46ContLW, good), "without S46_BR"},
		{"BR short", opt(OptS46ContLW, opt(OptS46BR, make([]byte, 15)), good), "want 16"},
		{"BR multicast", opt(OptS46ContLW, brOpt("ff02::1"), good), "not a global unicast"},
		{"psid without len", opt(OptS46ContLW, brOpt("2001:db8::1"), bindOpt("192.0.2.5", "2001:db8:a::2/128", portParams(0, 0, 0x1234))), "PSID-len 0"},
		{"offset+len>16", opt(OptS46ContLW, brOpt("2001:db8::1"), bindOpt("192.0.2.5", "2001:db8:a::2/128", portParams(6, 12, 0))), "> 16"},
		{"offset>15", opt(OptS46ContLW, brOpt("2001:db8::1"), bindOpt("192.0.2.5", "2001:db8:a::2/128", portParams(16, 0, 0))), "allowed 0-15"},
		{"psid padding", opt(OptS46ContLW, brOpt("2001:db8::1"), bindOpt("192.0.2.5", "2001:db8:a::2/128", portParams(0, 6, 5<<10|1))), "padding"},
		{"portparams short", opt(OptS46ContLW, brOpt("2001:db8::1"), bindOpt("192.0.2.5", "2001:db8:a::2/128", opt(OptS46PortPar, []byte{0, 6, 0}))), "want 4"},
		{"two binds", opt(OptS46ContLW, brOpt("2001:db8::1"), good, good), "more than one"},
		{"MAP rule", opt(OptS46ContLW, brOpt("2001:db8::1"), opt(OptS46Rule, make([]byte, 8))), "not permitted"},
		{"truncated sub-option", opt(OptS46ContLW, brOpt("2001:db8::1"), []byte{0, 92, 0, 40, 192, 0, 2, 5}), "runs past"},
		{"softwire v4", opt(OptS46ContLW, brOpt("2001:db8::1"), bindOpt("192.0.0.2", "2001:db8:a::2/128", nil)), "192.0.0.0/29"},
		{"prefix /96", opt(OptS46ContLW, brOpt("2001:db8::1"), bindOpt("192.0.2.5", "2001:db8:a::/96", nil)), "at most 64, or 128"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dnsAddr := netip.MustParseAddr("2001:db8::53").As16()
			srv := startServer(t, func(int) ([][]byte, bool) {
				return [][]byte{c.opt, opt(OptDNSServers, dnsAddr[:])}, false
			})
			log, lb := newLog()
			w := &Watcher{Client: srv.client(t, log), Logger: log}
			r, err := w.Get(ctxFor(t, 20*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if r.Info.AFTRName != "" || r.Info.LW != nil || r.AFTR.IsValid() {
				t.Fatalf("hostile option taken: name %q lw %v", r.Info.AFTRName, r.Info.LW)
			}
			if len(r.Info.Refused) != 1 || !errors.Is(r.Info.Refused[0], ErrOption) || !strings.Contains(r.Info.Refused[0].Error(), c.want) {
				t.Fatalf("refused %v, want one naming %q", r.Info.Refused, c.want)
			}
			if len(r.Info.DNS) != 1 {
				t.Errorf("the good option beside it was lost: DNS %v", r.Info.DNS)
			}
			if l := lb.String(); !strings.Contains(l, "DHCPv6 option refused") || !strings.Contains(l, c.want) {
				t.Errorf("no clear log line:\n%s", l)
			}
		})
	}
}

// Several containers: the first valid one wins; a bad one before it is
// refused and logged.
func TestFirstValidContainer(t *testing.T) {
	bad := opt(OptS46ContLW, bindOpt("192.0.2.5", "2001:db8:a::2/128", nil))
	good := opt(OptS46ContLW, brOpt("2001:db8::2"), bindOpt("192.0.2.6", "2001:db8:a::2/128", nil))
	srv := startServer(t, func(int) ([][]byte, bool) { return [][]byte{bad, good}, false })
	info, err := srv.client(t, nil).Ask(ctxFor(t, 20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if info.LW == nil || info.LW.BR != netip.MustParseAddr("2001:db8::2") || len(info.Refused) != 1 {
		t.Fatalf("lw %v refused %v", info.LW, info.Refused)
	}
}

// Unanswered requests are retransmitted with the same transaction ID and
// a growing Elapsed Time (RFC 8415 §15, §21.9).
func TestRetransmission(t *testing.T) {
	srv := startServer(t, func(n int) ([][]byte, bool) {
		return [][]byte{opt(OptAFTRName, name("aftr.example.net"))}, n < 2
	})
	info, err := srv.client(t, nil).Ask(ctxFor(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if info.AFTRName != "aftr.example.net" {
		t.Fatalf("name %q", info.AFTRName)
	}
	reqs := srv.requests()
	if len(reqs) < 3 {
		t.Fatalf("%d requests, want at least 3", len(reqs))
	}
	for i, r := range reqs[1:] {
		if r.TransactionID != reqs[0].TransactionID {
			t.Errorf("request %d: transaction ID changed", i+1)
		}
		if r.Options.ElapsedTime() <= reqs[i].Options.ElapsedTime() {
			t.Errorf("request %d: elapsed time %v not above %v", i+1, r.Options.ElapsedTime(), reqs[i].Options.ElapsedTime())
		}
	}
}

// With no server, Ask gives up when ctx ends, having retransmitted with
// growing intervals capped at MRT.
func TestAskBoundedByContext(t *testing.T) {
	srv := startServer(t, func(int) ([][]byte, bool) { return nil, true })
	c := srv.client(t, nil)
	_, err := c.Ask(ctxFor(t, 1500*time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "no valid Reply") {
		t.Fatalf("err %v", err)
	}
	if n := len(srv.requests()); n < 2 {
		t.Errorf("%d requests in 1.5 s with IRT 100 ms", n)
	}
}

// A Reply that is not ours (no Server ID, another transaction) is ignored
// with a log line; parse-level checks.
func TestParseReplyRefusesForeignMessages(t *testing.T) {
	xid := [3]byte{1, 2, 3}
	cid := (&dhcpv6.DUIDLL{HWType: 1, LinkLayerAddr: []byte{2, 0, 0, 0, 0, 2}}).ToBytes()
	build := func(f func(m *dhcpv6.Message)) []byte {
		m := &dhcpv6.Message{MessageType: dhcpv6.MessageTypeReply, TransactionID: xid}
		m.AddOption(dhcpv6.OptServerID(serverDUID))
		c, _ := dhcpv6.DUIDFromBytes(cid)
		m.AddOption(dhcpv6.OptClientID(c))
		f(m)
		return m.ToBytes()
	}
	if _, err := ParseReply(build(func(*dhcpv6.Message) {}), xid, cid); err != nil {
		t.Fatalf("good reply refused: %v", err)
	}
	for n, b := range map[string][]byte{
		"other xid":  build(func(m *dhcpv6.Message) { m.TransactionID = [3]byte{9, 9, 9} }),
		"no server":  build(func(m *dhcpv6.Message) { m.Options.Del(dhcpv6.OptionServerID) }),
		"no client":  build(func(m *dhcpv6.Message) { m.Options.Del(dhcpv6.OptionClientID) }),
		"advertise":  build(func(m *dhcpv6.Message) { m.MessageType = dhcpv6.MessageTypeAdvertise }),
		"truncated":  build(func(*dhcpv6.Message) {})[:7],
		"bad status": build(func(m *dhcpv6.Message) { m.AddOption(&dhcpv6.OptStatusCode{StatusCode: 2, StatusMessage: "no"}) }),
		"dns length": append(build(func(*dhcpv6.Message) {}), opt(OptDNSServers, make([]byte, 15))...),
	} {
		if _, err := ParseReply(b, xid, cid); !errors.Is(err, ErrReply) {
			t.Errorf("%s: err %v, want ErrReply", n, err)
		}
	}
}

// The refresh time is taken from option 32, never below 600 s.
func TestRefreshTime(t *testing.T) {
	for _, c := range []struct {
		secs uint32
		want time.Duration
	}{{3600, time.Hour}, {60, IRTMinimum}} {
		srv := startServer(t, func(int) ([][]byte, bool) {
			return [][]byte{opt(OptRefreshTime, []byte{byte(c.secs >> 24), byte(c.secs >> 16), byte(c.secs >> 8), byte(c.secs)})}, false
		})
		info, err := srv.client(t, nil).Ask(ctxFor(t, 20*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if info.Refresh != c.want {
			t.Errorf("refresh %d s: got %v, want %v", c.secs, info.Refresh, c.want)
		}
	}
}

// Watch re-resolves at the DNS TTL and asks again at the refresh time;
// each change reaches onChange.
func TestWatchFollowsChanges(t *testing.T) {
	defer func(a, b time.Duration) { irtMinimum, minTTL = a, b }(irtMinimum, minTTL)
	irtMinimum, minTTL = 300*time.Millisecond, 100*time.Millisecond
	dns := startDNS(t, map[string]netip.Addr{
		"aftr.example.net.":  netip.MustParseAddr("2001:db8::64"),
		"aftr2.example.net.": netip.MustParseAddr("2001:db8::65"),
	}, 0) // TTL 0: resolved again at minTTL
	dnsAddr := dns.addr.Addr().As16()
	var mu sync.Mutex
	aftrName := "aftr.example.net"
	srv := startServer(t, func(int) ([][]byte, bool) {
		mu.Lock()
		defer mu.Unlock()
		// Refresh 1 s, clamped up to the (shortened) minimum.
		return [][]byte{opt(OptAFTRName, name(aftrName)), opt(OptDNSServers, dnsAddr[:]), opt(OptRefreshTime, []byte{0, 0, 0, 1})}, false
	})
	w := &Watcher{Client: srv.client(t, nil), DNSPort: dns.addr.Port()}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first, err := w.Get(ctx)
	if err != nil || first.AFTR != netip.MustParseAddr("2001:db8::64") {
		t.Fatalf("first: %v %v", first.AFTR, err)
	}
	changes := make(chan Result, 16)
	done := make(chan struct{})
	go func() { w.Watch(ctx, first, func(r Result) { changes <- r }); close(done) }()
	wait := func(want string) {
		t.Helper()
		for {
			select {
			case r := <-changes:
				if r.AFTR == netip.MustParseAddr(want) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no change to %s", want)
			}
		}
	}
	// The record changes: found at the TTL.
	dns.set("aftr.example.net.", netip.MustParseAddr("2001:db8::66"))
	wait("2001:db8::66")
	// The server names another AFTR: found at the refresh.
	mu.Lock()
	aftrName = "aftr2.example.net"
	mu.Unlock()
	wait("2001:db8::65")
	if n := len(srv.requests()); n < 2 {
		t.Errorf("%d Information-Requests, want a refresh", n)
	}
	cancel()
	<-done
}
