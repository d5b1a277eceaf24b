package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad flags are reported with the flag's name and what is allowed, exit 2.
func TestBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--pool", "192.0.2.0/30"}, "--ipv6 is required"},
		{[]string{"--ipv6", "192.0.2.1", "--pool", "192.0.2.0/30"}, "--ipv6"},
		{[]string{"--ipv6", "2001:db8::1"}, "--pool is required"},
		{[]string{"--ipv6", "2001:db8::1", "--pool", "2001:db8::/64"}, "--pool"},
		{[]string{"--ipv6", "2001:db8::1", "--pool", "192.0.2.0/30", "--ports-per-b4", "1000"}, "--ports-per-b4"},
		{[]string{"--ipv6", "2001:db8::1", "--pool", "192.0.2.0/30", "--underlay", "gre"}, "--underlay"},
		{[]string{"--ipv6", "2001:db8::1", "--pool", "192.0.2.0/30", "--underlay", "udp"}, "--underlay-listen"},
		{[]string{"--ipv6", "2001:db8::1", "--pool", "192.0.2.0/30", "--ipv4-side", "wifi"}, "--ipv4-side"},
		{[]string{"--ipv6", "2001:db8::1", "--pool", "192.0.2.0/30", "--profile", "cisco"}, "--profile"},
		{[]string{"--ipv6", "2001:db8::1", "--pool", "192.0.2.0/30", "--egress-allow-loopback", "--ipv4-side", "tun:x"}, "--egress-allow-loopback"},
		{[]string{"--bogus"}, "bogus"},
	} {
		var out, errb bytes.Buffer
		if code := run(c.args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2", c.args, code)
		}
		if !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: stderr %q lacks %q", c.args, errb.String(), c.want)
		}
	}
}

// --bindings reads a Snabb softwire-config; a malformed one is refused
// naming the file, the line and the leaf, before anything is opened.
func TestBindingsFileErrors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.conf")
	os.WriteFile(p, []byte("softwire-config {\n  binding-table {\n    softwire {\n      ipv4 192.0.2.1;\n      psid 65536;\n      b4-ipv6 2001:db8::2;\n      port-set { psid-length 6; }\n    }\n  }\n}\n"), 0o644)
	o, err := parseFlags([]string{"--ipv6", "2001:db8::1", "--bindings", p, "--underlay", "udp", "--underlay-listen", "127.0.0.1:0"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = buildConfig(o)
	if err == nil || !strings.Contains(err.Error(), "bad.conf:") || !strings.Contains(err.Error(), "psid") {
		t.Fatalf("err = %v; want file:line naming psid", err)
	}
}

// A good file gives static bindings and its settings, and explicit flags
// win over it.
func TestBindingsFileApplied(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ok.conf")
	os.WriteFile(p, []byte(`softwire-config {
  binding-table {
    softwire { ipv4 192.0.2.1; psid 3; b4-ipv6 2001:db8::2; br-address 2001:db8::1; port-set { psid-length 6; } }
  }
  internal-interface { hairpinning false; }
}
`), 0o644)
	o, err := parseFlags([]string{"--ipv6", "2001:db8::1", "--bindings", p, "--icmp-on-fail=false"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := buildConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	if st := cfg.StaticBindings(); len(st) != 1 || st[0].IPv4.String() != "192.0.2.1" || st[0].PSID.ID != 3 {
		t.Fatalf("static bindings %+v", st)
	}
	if cfg.Hairpinning {
		t.Error("the file's hairpinning false was not applied")
	}
	if cfg.ICMPv6OnBindingFailure {
		t.Error("--icmp-on-fail=false did not override the file")
	}
}
