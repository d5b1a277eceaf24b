package snabbconf

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/lw4o6/lw4o6/internal/testenv"
	"github.com/lw4o6/lw4o6/stack/portset"
)

// confDir holds Snabb's own end-to-end configurations (see its README).
const confDir = "../../../shared/conformance/snabb/confs"

func parseString(t *testing.T, s string) *Config {
	t.Helper()
	c, err := Parse(strings.NewReader(s), "test.conf")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestConformanceConfs(t *testing.T) {
	testenv.RequireFile(t, confDir, "Snabb's conformance configurations")
	type want struct {
		extMTU, intMTU       int
		hairpin              bool
		genICMP, allowICMP   bool
		maxFrags             int
		intMaxPackets        int
		extFilter, intFilter string
	}
	cases := map[string]want{
		"big_mtu_no_icmp.conf":             {1960, 2000, true, false, false, 40, 20000, "", ""},
		"icmp_on_fail.conf":                {1460, 1500, true, true, false, 40, 20000, "", ""},
		"no_hairpin.conf":                  {1460, 1500, false, false, false, 40, 20000, "", ""},
		"no_icmp.conf":                     {1460, 1500, true, false, false, 40, 20000, "", ""},
		"no_icmp_maxfrags1.conf":           {1460, 1500, true, false, false, 1, 10, "", ""},
		"no_icmp_with_filters_accept.conf": {1460, 1500, true, false, false, 40, 20000, "ip", "ip6"},
		"no_icmp_with_filters_drop.conf":   {1460, 1500, true, false, false, 40, 20000, "len < 0", "len < 0"},
		"small_ipv4_mtu_icmp.conf":         {576, 1500, true, true, true, 40, 20000, "", ""},
		"small_ipv6_mtu_no_icmp.conf":      {1500, 1280, true, false, false, 40, 20000, "", ""},
		"tunnel_icmp.conf":                 {1460, 1500, true, true, true, 40, 20000, "", ""},
	}
	files, _ := filepath.Glob(filepath.Join(confDir, "*.conf"))
	if len(files) != len(cases) {
		t.Errorf("found %d confs, want %d", len(files), len(cases))
	}
	ip4 := netip.MustParseAddr("10.10.10.10")
	ip6 := netip.MustParseAddr("8:9:a:b:c:d:e:f")
	for name, w := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := ParseFile(filepath.Join(confDir, name))
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Softwires) != 12 {
				t.Errorf("%d softwires, want 12", len(c.Softwires))
			}
			first := Softwire{
				IPv4:    netip.MustParseAddr("178.79.150.3"),
				PSID:    4,
				B4:      netip.MustParseAddr("127:14:25:36:47:58:69:128"),
				BR:      netip.MustParseAddr("1e:2:2:2:2:2:2:af"),
				PortSet: portset.PSID{Offset: 0, Length: 6, ID: 4},
				Line:    3,
			}
			if c.Softwires[0] != first {
				t.Errorf("softwire 0 = %+v, want %+v", c.Softwires[0], first)
			}
			if sw := c.Softwires[1]; sw.IPv4 != netip.MustParseAddr("178.79.150.233") || sw.PSID != 22788 || sw.PortSet != (portset.PSID{Length: 16, ID: 22788}) || sw.BR != ip6 {
				t.Errorf("softwire 1 = %+v", sw)
			}
			if sw := c.Softwires[2]; sw.PortSet != (portset.PSID{}) || sw.Line != 21 {
				t.Errorf("softwire 2 (psid-length 0) = %+v", sw)
			}
			if c.External.IP != ip4 || c.Internal.IP != ip6 {
				t.Errorf("IPs = %v, %v; want %v, %v", c.External.IP, c.Internal.IP, ip4, ip6)
			}
			if len(c.Instances) != 1 || c.Instances[0].Device != "test" || len(c.Instances[0].Queues) != 1 {
				t.Fatalf("instances = %+v", c.Instances)
			}
			q := c.Instances[0].Queues[0]
			if q.ID != 0 || q.External.IP != ip4 || q.Internal.IP != ip6 || q.External.NextHopMAC.String() != "68:68:68:68:68:68" || q.Internal.MAC.String() != "22:22:22:22:22:22" {
				t.Errorf("queue = %+v", q)
			}
			e, i := c.External, c.Internal
			if e.MTU != w.extMTU || i.MTU != w.intMTU {
				t.Errorf("MTUs ext %d int %d, want %d %d", e.MTU, i.MTU, w.extMTU, w.intMTU)
			}
			if i.Hairpinning != w.hairpin {
				t.Errorf("hairpinning %v, want %v", i.Hairpinning, w.hairpin)
			}
			for _, side := range []Interface{e, i} {
				if side.GenerateICMPErrors != w.genICMP || side.AllowIncomingICMP != w.allowICMP {
					t.Errorf("generate-icmp-errors %v allow-incoming-icmp %v, want %v %v", side.GenerateICMPErrors, side.AllowIncomingICMP, w.genICMP, w.allowICMP)
				}
				if side.MaxFragmentsPerPacket != w.maxFrags {
					t.Errorf("max-fragments-per-packet %d, want %d", side.MaxFragmentsPerPacket, w.maxFrags)
				}
				if side.ErrorRateLimit != (RateLimit{600000, 2 * time.Second}) {
					t.Errorf("error-rate-limiting %+v", side.ErrorRateLimit)
				}
			}
			if e.MaxReassemblyPackets != 20000 || i.MaxReassemblyPackets != w.intMaxPackets {
				t.Errorf("max-packets %d %d", e.MaxReassemblyPackets, i.MaxReassemblyPackets)
			}
			if e.IngressFilter != w.extFilter || e.EgressFilter != w.extFilter || i.IngressFilter != w.intFilter || i.EgressFilter != w.intFilter {
				t.Errorf("filters %q %q %q %q", e.IngressFilter, e.EgressFilter, i.IngressFilter, i.EgressFilter)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := parseString(t, "softwire-config {\n}\n")
	ext, int6 := c.External, c.Internal
	if ext.MTU != 1460 || int6.MTU != 1500 || ext.MRU != 1460 || int6.MRU != 1460 {
		t.Errorf("MTU/MRU defaults %d %d %d %d", ext.MTU, int6.MTU, ext.MRU, int6.MRU)
	}
	for _, i := range []Interface{ext, int6} {
		if !i.GenerateICMPErrors || !i.AllowIncomingICMP || i.MaxFragmentsPerPacket != 20 || i.MaxReassemblyPackets != 20000 ||
			i.ErrorRateLimit != (RateLimit{200, 2 * time.Second}) || i.VLANTag != -1 || i.IP.IsValid() {
			t.Errorf("defaults %+v", i)
		}
	}
	if !int6.Hairpinning || ext.Hairpinning || int6.FlowLabel != 0 {
		t.Errorf("hairpinning %v/%v flow label %d", int6.Hairpinning, ext.Hairpinning, int6.FlowLabel)
	}
	if len(c.Softwires) != 0 || len(c.Instances) != 0 {
		t.Errorf("non-empty: %+v", c)
	}
}

// TestSyntax covers the lexical forms of Snabb's parser: both comment
// styles, both quotes, escapes, "+" joins, CRLF and multi-line strings.
func TestSyntax(t *testing.T) {
	src := "// leading comment\r\n" + // 1
		"softwire-config{ /* a\r\n" + // 2
		"   multi-line comment */\r\n" + // 3
		"  name \"a\\\"b\" + 'c\\n'; // two pieces\r\n" + // 4
		`  external-interface {
    ingress-filter "ip and
                    not tcp";
    egress-filter "";
    error-rate-limiting { packets 0; period 30; }
  }
  binding-table {
    softwire { ipv4 192.0.2.1; psid 1; b4-ipv6 2001:db8::1:1; port-set { psid-length 6; reserved-ports-bit-count 6; } }
    version { number 18446744073709551615; date 2024-08-01T12:00:00.5Z; }
  }
  internal-interface {
    flow-label 1048575;
    vlan-tag 0;
  }
}
`
	c := parseString(t, src)
	if c.Name != `a"bc\n` {
		t.Errorf("name %q", c.Name)
	}
	if c.External.IngressFilter != "ip and\nnot tcp" || c.External.EgressFilter != "" {
		t.Errorf("filters %q %q", c.External.IngressFilter, c.External.EgressFilter)
	}
	if c.External.ErrorRateLimit != (RateLimit{0, 30 * time.Second}) {
		t.Errorf("rate limit %+v", c.External.ErrorRateLimit)
	}
	if len(c.Softwires) != 1 {
		t.Fatalf("softwires %+v", c.Softwires)
	}
	sw := c.Softwires[0]
	if sw.Line != 12 || sw.PortSet != (portset.PSID{Offset: 6, Length: 6, ID: 1}) || sw.BR.IsValid() {
		t.Errorf("softwire %+v", sw)
	}
	if c.Version.Number != 1<<64-1 || c.Version.Date.Unix() != 1722513600 {
		t.Errorf("version %+v", c.Version)
	}
	if c.Internal.FlowLabel != 1<<20-1 || c.Internal.VLANTag != 0 || c.External.VLANTag != -1 {
		t.Errorf("flow label %d vlan %d/%d", c.Internal.FlowLabel, c.Internal.VLANTag, c.External.VLANTag)
	}
}

func TestQuotedIndentation(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"  'foo\n    bar'", "foo\n bar"},
		{"  'foo\n  bar'", "foo\nbar"},
		{"   'foo\n\tbar'", "foo\n    bar"},
		{"   'foo\n bar'", "foo\nbar"},
		{"  \"foo\n      bar\"", "foo\n   bar"},
	} {
		c := parseString(t, "softwire-config {\nname\n"+tc.in+";\n}\n")
		if c.Name != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, c.Name, tc.want)
		}
	}
}

func TestInstances(t *testing.T) {
	c := parseString(t, `softwire-config {
  internal-interface { vlan-tag 7; }
  instance {
    device 0000:01:00.0;
    external-device 0000:02:00.0;
    queue {
      id 5;
      external-interface { ip 198.51.100.1; vlan-tag 100; }
      internal-interface { ip 2001:db8::1; next-hop { ip 2001:db8::fe; } }
    }
    queue {
      id 6;
      external-interface { ip 198.51.100.2; }
      internal-interface { ip 2001:db8::2; }
    }
  }
  instance {
    device 0000:03:00.0;
    queue {
      id 0;
      external-interface { ip 203.0.113.1; device 0000:04:00.0; }
      internal-interface { ip 2001:db8::3; }
    }
  }
}
`)
	if len(c.Instances) != 2 || len(c.Instances[0].Queues) != 2 {
		t.Fatalf("instances %+v", c.Instances)
	}
	if c.External.IP != netip.MustParseAddr("198.51.100.1") || c.Internal.IP != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("IPs %v %v: want the first queue's", c.External.IP, c.Internal.IP)
	}
	if c.External.VLANTag != 100 || c.Internal.VLANTag != 7 {
		t.Errorf("VLAN tags %d %d", c.External.VLANTag, c.Internal.VLANTag)
	}
	if c.Internal.NextHopIP != netip.MustParseAddr("2001:db8::fe") {
		t.Errorf("next hop %v", c.Internal.NextHopIP)
	}
	if c.Instances[0].ExternalDevice != "0000:02:00.0" || c.Instances[1].ExternalDevice != "0000:04:00.0" || c.Instances[0].Queues[1].ID != 6 || c.Instances[1].Line != 17 {
		t.Errorf("instances %+v", c.Instances)
	}
}

// base is a valid configuration with documentation addresses; malformed
// inputs replace one of its lines.
var base = []string{
	"", // lines count from 1
	"softwire-config {",
	"  binding-table {",
	"    softwire {",
	"      ipv4 192.0.2.1;",
	"      psid 1;",
	"      b4-ipv6 2001:db8:1::1;",
	"      br-address 2001:db8::1;",
	"      port-set {",
	"        psid-length 6;",
	"      }",
	"    }",
	"  }",
	"  external-interface {",
	"    mtu 1500;",
	"  }",
	"  internal-interface {",
	"    mtu 1540;",
	"  }",
	"  instance {",
	"    device eth0;",
	"    queue {",
	"      id 0;",
	"      external-interface { ip 198.51.100.1; mac 02:00:00:00:00:01; next-hop { mac 02:00:00:00:00:02; } }",
	"      internal-interface { ip 2001:db8::1; mac 02:00:00:00:00:03; next-hop { ip 2001:db8::fe; } }",
	"    }",
	"  }",
	"}",
}

func mutate(line int, text string) string {
	l := append([]string(nil), base[1:]...)
	l[line-1] = text
	return strings.Join(l, "\n") + "\n"
}

func TestBaseIsValid(t *testing.T) {
	c := parseString(t, mutate(1, base[1]))
	if len(c.Softwires) != 1 || c.External.MTU != 1500 || c.Internal.MTU != 1540 || c.External.NextHopMAC.String() != "02:00:00:00:00:02" {
		t.Errorf("%+v", c)
	}
}

func TestMalformed(t *testing.T) {
	const (
		sc  = "softwire-config"
		sw  = sc + "/binding-table/softwire"
		ext = sc + "/external-interface"
		itf = sc + "/internal-interface"
		q   = sc + "/instance/queue"
	)
	cases := []struct {
		name  string
		in    string
		line  int
		path  string
		err   error
		inMsg string
	}{
		{"missing semicolon", mutate(14, "    mtu 1500"), 14, ext + "/mtu", ErrSyntax, "missing ';'"},
		{"two values", mutate(14, "    mtu 1500 1600;"), 14, ext + "/mtu", ErrSyntax, "missing ';'"},
		{"not a number", mutate(14, "    mtu abc;"), 14, ext + "/mtu", ErrValue, `"abc"`},
		{"negative", mutate(14, "    mtu -1;"), 14, ext + "/mtu", ErrValue, "unsigned"},
		{"ipv4 mtu too small", mutate(14, "    mtu 67;"), 14, ext + "/mtu", ErrValue, "68..65535"},
		{"mtu too big", mutate(14, "    mtu 65536;"), 14, ext + "/mtu", ErrValue, "out of range"},
		{"ipv6 mtu too small", mutate(17, "    mtu 1279;"), 17, itf + "/mtu", ErrValue, "1280..65535"},
		{"unknown leaf", mutate(14, "    foo 1;"), 14, ext + "/foo", ErrUnknown, `unknown leaf "foo" in softwire-config/external-interface`},
		{"hairpinning is internal only", mutate(14, "    hairpinning false;"), 14, ext + "/hairpinning", ErrUnknown, "unknown leaf"},
		{"v1 top-level ip", mutate(14, "    ip 198.51.100.1;"), 14, ext + "/ip", ErrUnknown, "unknown leaf"},
		{"unknown container", mutate(14, "    frob { }"), 14, ext + "/frob", ErrUnknown, `unknown container "frob"`},
		{"unknown top level", mutate(1, "softwire-konfig {"), 1, "softwire-konfig", ErrUnknown, "top level"},
		{"state is not config", mutate(19, "  softwire-state { }\n  instance {"), 19, sc + "/softwire-state", ErrUnknown, "unknown container"},
		{"resolved-mac is state", mutate(24, "      internal-interface { ip 2001:db8::1; next-hop { resolved-mac 02:00:00:00:00:04; } }"), 24, q + "/internal-interface/next-hop/resolved-mac", ErrUnknown, "unknown leaf"},
		{"bad ipv4", mutate(4, "      ipv4 192.0.2.300;"), 4, sw + "/ipv4", ErrValue, "IPv4"},
		{"ipv6 as ipv4", mutate(4, "      ipv4 2001:db8::1;"), 4, sw + "/ipv4", ErrValue, "IPv4"},
		{"ipv4 as b4", mutate(6, "      b4-ipv6 192.0.2.1;"), 6, sw + "/b4-ipv6", ErrValue, "IPv6"},
		{"zone", mutate(7, "      br-address fe80::1%eth0;"), 7, sw + "/br-address", ErrValue, "IPv6"},
		{"psid overflow", mutate(5, "      psid 65536;"), 5, sw + "/psid", ErrValue, "out of range"},
		{"a+k > 16", mutate(9, "        psid-length 10; reserved-ports-bit-count 7;"), 9, sw + "/port-set/reserved-ports-bit-count", ErrValue, "exceeds 16"},
		{"k > 16", mutate(9, "        psid-length 17;"), 9, sw + "/port-set/psid-length", ErrValue, "0..16"},
		{"duplicate leaf", mutate(17, "    mtu 1540;\n    mtu 1600;"), 18, itf + "/mtu", ErrDuplicate, "first at line 17"},
		{"duplicate container", mutate(16, "  external-interface {"), 16, ext, ErrDuplicate, "first at line 13"},
		{"never closed", mutate(27, ""), 1, sc, ErrSyntax, "never closed"},
		{"extra close", mutate(27, "}\n}"), 28, "", ErrSyntax, "unexpected '}'"},
		{"stray semicolon", mutate(14, "    ;"), 14, ext, ErrSyntax, "';'"},
		{"unterminated string", mutate(14, `    ingress-filter "ip;`), 14, ext + "/ingress-filter", ErrSyntax, "unterminated"},
		{"unterminated comment", mutate(14, "    /* mtu 1500;"), 14, ext, ErrSyntax, "unterminated /*"},
		{"hash is no comment", mutate(14, "    # comment"), 14, ext, ErrSyntax, "does not start a comment"},
		{"lone slash", mutate(14, "    mtu 1500/2;"), 14, ext + "/mtu", ErrSyntax, "'/'"},
		{"plus without quote", mutate(14, `    ingress-filter "ip" + tcp;`), 14, ext + "/ingress-filter", ErrSyntax, "'+'"},
		{"bad boolean", mutate(17, "    hairpinning yes;"), 17, itf + "/hairpinning", ErrValue, "true or false"},
		{"vlan range", mutate(17, "    vlan-tag 4096;"), 17, itf + "/vlan-tag", ErrValue, "0..4095"},
		{"flow label range", mutate(17, "    flow-label 1048576;"), 17, itf + "/flow-label", ErrValue, "out of range"},
		{"period zero", mutate(14, "    error-rate-limiting { period 0; }"), 14, ext + "/error-rate-limiting/period", ErrValue, "1..4294967295"},
		{"max frags zero", mutate(14, "    reassembly { max-fragments-per-packet 0; }"), 14, ext + "/reassembly/max-fragments-per-packet", ErrValue, "out of range"},
		{"missing value", mutate(14, "    mtu;"), 14, ext + "/mtu", ErrValue, "missing value"},
		{"empty value", mutate(14, `    mtu "";`), 14, ext + "/mtu", ErrValue, "unsigned"},
		{"leaf as block", mutate(14, "    mtu { }"), 14, ext + "/mtu", ErrSyntax, "is a leaf"},
		{"container as leaf", mutate(14, "    reassembly 5;"), 14, ext + "/reassembly", ErrSyntax, "is a container"},
		{"container with value", mutate(13, "  external-interface eth1 {"), 13, ext, ErrSyntax, "takes no value"},
		{"missing b4", mutate(6, ""), 3, sw + "/b4-ipv6", ErrMissing, `"b4-ipv6"`},
		{"missing psid", mutate(5, ""), 3, sw + "/psid", ErrMissing, `"psid"`},
		{"missing psid-length", mutate(9, ""), 3, sw + "/port-set/psid-length", ErrMissing, "psid-length"},
		{"missing queue ip", mutate(23, "      external-interface { mac 02:00:00:00:00:01; }"), 21, q + "/external-interface/ip", ErrMissing, "external-interface/ip"},
		{"missing device", mutate(20, ""), 19, sc + "/instance/device", ErrMissing, `"device"`},
		{"next-hop ip and mac", mutate(24, "      internal-interface { ip 2001:db8::1; next-hop { ip 2001:db8::fe; mac 02:00:00:00:00:04; } }"), 24, q + "/internal-interface/next-hop/mac", ErrDuplicate, "not both"},
		{"next-hop ipv4 on inside", mutate(24, "      internal-interface { ip 2001:db8::1; next-hop { ip 192.0.2.254; } }"), 24, q + "/internal-interface/next-hop/ip", ErrValue, "IPv6"},
		{"bad mac", mutate(23, "      external-interface { ip 198.51.100.1; mac 02:00:00:00:00; }"), 23, q + "/external-interface/mac", ErrValue, "MAC"},
		{"dashed mac", mutate(23, "      external-interface { ip 198.51.100.1; mac 02-00-00-00-00-01; }"), 23, q + "/external-interface/mac", ErrValue, "MAC"},
		{"queue id range", mutate(22, "      id 256;"), 22, q + "/id", ErrValue, "0..255"},
		{"duplicate queue id", mutate(25, "    }\n    queue { id 0; external-interface { ip 198.51.100.2; } internal-interface { ip 2001:db8::2; } }"), 26, q, ErrDuplicate, "line 21"},
		{"duplicate instance", mutate(26, "  }\n  instance { device eth0; }"), 27, sc + "/instance", ErrDuplicate, "line 19"},
		{"keyword quoted", mutate(14, `    "mtu" 1500;`), 14, ext, ErrSyntax, "keyword"},
		{"bad utf8 filter", mutate(14, "    ingress-filter \"\xff\";"), 14, ext + "/ingress-filter", ErrValue, "UTF-8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.in), "cfg.conf")
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if e.Line != tc.line || e.Path != tc.path || !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.inMsg) {
				t.Errorf("got line %d path %q (%v): %v\nwant line %d path %q (%v) containing %q", e.Line, e.Path, e.Err, err, tc.line, tc.path, tc.err, tc.inMsg)
			}
			if !strings.HasPrefix(err.Error(), "cfg.conf:") {
				t.Errorf("error %q does not name the file", err)
			}
			// The same error whatever the reads look like, streaming or not.
			for _, r := range []io.Reader{iotest.OneByteReader(strings.NewReader(tc.in)), iotest.HalfReader(strings.NewReader(tc.in))} {
				if _, err2 := Stream(r, "cfg.conf", nil); err2 == nil || err2.Error() != err.Error() {
					t.Errorf("Stream: %v, want %v", err2, err)
				}
			}
		})
	}
}

func TestUnknownLeafMessage(t *testing.T) {
	_, err := Parse(strings.NewReader(mutate(14, "    foo 1;")), "cfg.conf")
	const want = `cfg.conf:14: unknown leaf "foo" in softwire-config/external-interface`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestVersionDate(t *testing.T) {
	_, err := Parse(strings.NewReader(mutate(12, "    version { date yesterday; }\n  }")), "cfg.conf")
	var e *Error
	if !errors.As(err, &e) || e.Line != 12 || e.Path != "softwire-config/binding-table/version/date" || !errors.Is(err, ErrValue) {
		t.Errorf("got %v", err)
	}
}

func TestEmptyInput(t *testing.T) {
	for _, in := range []string{"", "// nothing\n", "\xef\xbb\xbf"} {
		_, err := Parse(strings.NewReader(in), "empty.conf")
		if !errors.Is(err, ErrMissing) || err.Error() != "empty.conf: no softwire-config container" {
			t.Errorf("%q: got %v", in, err)
		}
	}
	_, err := Parse(strings.NewReader("softwire-config {}\nsoftwire-config {}\n"), "two.conf")
	if !errors.Is(err, ErrDuplicate) {
		t.Errorf("two softwire-configs: %v", err)
	}
}

const twoSoftwires = `softwire-config {
  binding-table {
    softwire {
      ipv4 192.0.2.1;
      psid 1;
      b4-ipv6 2001:db8:1::1;
      port-set { psid-length 6; }
    }
    softwire {
      ipv4 192.0.2.1;
      psid %s;
      b4-ipv6 2001:db8:1::2;
      port-set { %s }
    }
  }
}
`

func twoSW(psid, portSet string) string {
	s := strings.Replace(twoSoftwires, "%s", psid, 1)
	return strings.Replace(s, "%s", portSet, 1)
}

func TestPortSetConflict(t *testing.T) {
	for _, ps := range []string{"psid-length 4;", "psid-length 6; reserved-ports-bit-count 4;"} {
		_, err := Parse(strings.NewReader(twoSW("2", ps)), "bt.conf")
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, ErrConflict) || e.Line != 9 || e.OtherLine != 3 ||
			!strings.Contains(err.Error(), "line 3") || !strings.HasPrefix(err.Error(), "bt.conf:9: ") {
			t.Errorf("%s: got %v", ps, err)
		}
	}
	// The same parameters, a different PSID: fine.
	c := parseString(t, twoSW("2", "psid-length 6; reserved-ports-bit-count 0;"))
	if len(c.Softwires) != 2 || c.Softwires[1].Line != 9 {
		t.Errorf("%+v", c.Softwires)
	}
}

func TestDuplicateSoftwire(t *testing.T) {
	_, err := Parse(strings.NewReader(twoSW("1", "psid-length 6;")), "bt.conf")
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrDuplicate) || e.Line != 9 || e.OtherLine != 3 ||
		!strings.Contains(err.Error(), "ipv4 192.0.2.1 psid 1 is already defined at line 3") {
		t.Errorf("got %v", err)
	}
}

func TestReaderError(t *testing.T) {
	_, err := ParseFile(filepath.Join(t.TempDir(), "absent.conf"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v", err)
	}
}

// Snabb's own generate-configuration writes softwires whose psid does not
// fit in their psid-length, and Snabb loads the file: so do we, skipping
// and counting them (issue: a Snabb configuration refused whole).
func TestPSIDOutOfRangeSkipped(t *testing.T) {
	c, err := Parse(strings.NewReader(mutate(5, "      psid 64;")), "cfg.conf")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.OutOfRange.Count != 1 || c.OutOfRange.FirstLine != 5 || !strings.Contains(c.OutOfRange.First, "psid-length 6") {
		t.Errorf("OutOfRange = %+v, want 1 at line 5", c.OutOfRange)
	}
	for _, sw := range c.Softwires {
		if sw.PSID == 64 {
			t.Errorf("out-of-range softwire kept: %+v", sw)
		}
	}
	// A real conflict is still refused.
	if _, err := Parse(strings.NewReader(mutate(9, "        psid-length 10; reserved-ports-bit-count 7;")), "cfg.conf"); err == nil {
		t.Error("a+k > 16 accepted")
	}
}
