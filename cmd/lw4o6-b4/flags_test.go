package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// Bad flags are reported with the flag's name and what is allowed, exit 2.
func TestBadFlags(t *testing.T) {
	base := []string{"--aftr", "2001:db8::1", "--socks5", "127.0.0.1:1080"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--socks5", "127.0.0.1:1080"}, "--aftr is required"},
		{[]string{"--aftr", "2001:db8::1"}, "no LAN side"},
		{[]string{"--aftr", "192.0.2.1", "--socks5", "127.0.0.1:1080", "--underlay", "udp", "--underlay-peer", "127.0.0.1:1"}, ""},
		{append(base, "--tun-driver", "tap"), "--tun-driver"},
		{append(base, "--tun-addr", "2001:db8::/64"), "--tun-addr"},
		{append(base, "--tun-setup"), "--tun-setup needs --tun and --tun-addr"},
		{append(base, "--default-route"), "--default-route needs --tun-setup"},
		{append(base, "--ipv6", "192.0.2.1"), "--ipv6"},
		{append(base, "--underlay", "gre"), "--underlay"},
		{append(base, "--underlay", "udp"), "--underlay-peer"},
		{append(base, "--underlay-peer", "127.0.0.1:4666"), "--underlay udp"},
		{append(base, "--mtu", "1000"), "--mtu"},
		{append(base, "--port-set-size", "0"), "--port-set-size"},
		{append(base, "--lifetime", "1s"), "--lifetime"},
		{append(base, "--log-level", "loud"), "--log-level"},
		{append(base, "extra"), "unexpected argument"},
		{append(base, "--forward", "tcp:80"), "--forward"},
		{append(base, "--forward", "sctp:80=198.18.0.2:80"), "--forward"},
		{append(base, "--forward", "tcp:0=198.18.0.2:80"), "--forward"},
		{append(base, "--forward", "tcp:80=2001:db8::2:80"), "--forward"},
		{append(base, "--forward", "tcp:80=198.18.0.2:80", "--forward", "tcp:81=198.18.0.2:80"), "forwarded twice"},
		{append(base, "--lan-pcp", "2001:db8::1"), "--lan-pcp"},
		{append(base, "--lan-pcp", "none", "--lan-pcp", "198.18.0.1"), "--lan-pcp none"},
		{append(base, "--lan-pcp-third-party", "198.18.0.300/24"), "--lan-pcp-third-party"},
		{append(base, "--provision", "tr069"), "--provision"},
		{append(base, "--pcp-wait", "0s"), "--pcp-wait"},
		{append(base, "--dhcpv6-server", "nowhere"), "--dhcpv6-server"},
		{append(base, "--provision", "dhcpv6"), "--provision dhcpv6 needs the access link"},
		{append(base, "--announce-group", "2001:db8::1"), "--announce-group"},
		{append(base, "--ipv4", "192.0.2.1"), "--ipv4 and --port-set"},
		{append(base, "--port-set", "4096-8191"), "--ipv4 and --port-set"},
		{append(base, "--ipv4", "192.0.2.1", "--port-set", "8191-4096"), "--port-set"},
		{append(base, "--ipv4", "192.0.2.1", "--port-set", "0-1023"), "port 0"},
		{append(base, "--ipv4", "192.0.2.1", "--port-set", "4096-5000"), "aligned power-of-two"},
		{append(base, "--ipv4", "192.0.0.2", "--port-set", "4096-8191"), "softwire"},
		{append(base, "--ipv4", "2001:db8::1", "--port-set", "4096-8191"), "--ipv4"},
		{[]string{"--bogus"}, "bogus"},
	} {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		if c.want == "" {
			// A valid command line that fails later (an IPv4 --aftr) is
			// exit 1, with the flag named.
			if code != 1 || !strings.Contains(errb.String(), "--aftr") {
				t.Errorf("%v: exit %d, stderr %q", c.args, code, errb.String())
			}
			continue
		}
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", c.args, code)
		}
		if !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: stderr %q lacks %q", c.args, errb.String(), c.want)
		}
	}
}

func TestHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--help"}, &out, &errb); code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, want := range []string{"--socks5", "--tun", "--underlay", "no root", "Examples"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

func TestForwardAndLANFlags(t *testing.T) {
	var errb bytes.Buffer
	o, err := parseFlags([]string{"--aftr", "2001:db8::1", "--tun", "x", "--tun-addr", "198.18.1.1/30",
		"--forward", "tcp:8080=198.18.0.2:80", "--forward", "UDP:53=198.18.0.3:5353", "--lan-pcp-third-party", "198.18.0.9/32"}, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.lan.forwards) != 2 || o.lan.forwards[0].Proto != 6 || o.lan.forwards[0].External != 8080 ||
		o.lan.forwards[0].Internal != netip.MustParseAddrPort("198.18.0.2:80") || o.lan.forwards[1].Proto != 17 {
		t.Errorf("forwards %+v", o.lan.forwards)
	}
	if len(o.lan.addrs) != 1 || o.lan.addrs[0] != netip.MustParseAddr("198.18.1.1") {
		t.Errorf("--lan-pcp default %v, want the --tun-addr address", o.lan.addrs)
	}
	if len(o.lan.thirdParty) != 1 {
		t.Errorf("third party %v", o.lan.thirdParty)
	}
	o, err = parseFlags([]string{"--aftr", "2001:db8::1", "--tun", "x", "--tun-addr", "198.18.1.1/30", "--lan-pcp", "none"}, &errb)
	if err != nil || len(o.lan.addrs) != 0 || !o.lan.off {
		t.Errorf("--lan-pcp none: %+v %v", o.lan, err)
	}
}

// Static provisioning and the failover flags reach the options parsed.
func TestFailoverFlags(t *testing.T) {
	var errb bytes.Buffer
	o, err := parseFlags([]string{"--aftr", "2001:db8::1", "--socks5", "127.0.0.1:1080", "--ipv4", "192.0.2.1",
		"--port-set", "4096-8191", "--announce-group", "ff02::1", "--keep-binding", "--state-dir", "/tmp/x"}, &errb)
	if err != nil {
		t.Fatal(err)
	}
	f := o.failover
	if f.staticIPv4.String() != "192.0.2.1" || f.staticPorts.First != 4096 || f.staticPorts.Size != 4096 ||
		f.announceGroup.String() != "ff02::1" || !f.keepBinding || f.stateDir != "/tmp/x" {
		t.Fatalf("parsed %+v", f)
	}
}
