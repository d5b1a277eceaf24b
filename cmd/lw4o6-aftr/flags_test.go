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
		{[]string{"--ipv6", "2001:db8::1", "--pool", "192.0.2.0/30", "--provisioner", "nobody"}, "--provisioner"},
		{[]string{"--ipv6", "2001:db8::1", "--pool", "192.0.2.0/30", "--provision-listen", "[::1]:5351"}, "--provisioner"},
		{[]string{"--ipv6", "2001:db8::1", "--pool", "192.0.2.0/30", "--provisioner", "::1", "--provision-listen", "::1"}, "--provision-listen"},
		{[]string{"--ipv6", "2001:db8::1", "--pool", "192.0.2.0/30", "--announce-group", "2001:db8::5"}, "--announce-group"},
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

// The provisioning and failover flags reach the AFTR's configuration.
func TestProvisioningFlags(t *testing.T) {
	o, err := parseFlags([]string{"--ipv6", "2001:db8::1", "--pool", "192.0.2.0/30", "--provisioner", "2001:db8:ff::/64",
		"--provisioner", "2001:db8:fe::7", "--provision-listen", "[::1]:5351", "--announce=false", "--announce-group", "ff02::1"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := buildConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Provisioners) != 2 || cfg.Provisioners[0].String() != "2001:db8:ff::/64" || cfg.Provisioners[1].String() != "2001:db8:fe::7/128" {
		t.Errorf("provisioners %v", cfg.Provisioners)
	}
	if cfg.Announce || cfg.AnnounceGroup.String() != "ff02::1" || o.provisionListen != "[::1]:5351" {
		t.Errorf("announce %v group %v listen %q", cfg.Announce, cfg.AnnounceGroup, o.provisionListen)
	}
	o, _ = parseFlags([]string{"--ipv6", "2001:db8::1", "--pool", "192.0.2.0/30"}, &bytes.Buffer{})
	if cfg, _ := buildConfig(o); !cfg.Announce || cfg.AnnounceGroup.IsValid() || len(cfg.Provisioners) != 0 {
		t.Errorf("defaults: announce %v group %v provisioners %v", cfg.Announce, cfg.AnnounceGroup, cfg.Provisioners)
	}
}

// --state-dir defaults to systemd's $STATE_DIRECTORY, then the XDG state
// directory, then ~/.local/state; "" turns the journal off.
func TestStateDirDefault(t *testing.T) {
	base := []string{"--ipv6", "2001:db8::1", "--pool", "192.0.2.0/30"}
	parse := func(args ...string) string {
		t.Helper()
		o, err := parseFlags(append(base, args...), &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		return o.stateDir
	}
	t.Setenv("STATE_DIRECTORY", "/var/lib/lw4o6-aftr:/var/lib/other")
	if d := parse(); d != "/var/lib/lw4o6-aftr" {
		t.Errorf("with STATE_DIRECTORY: %q", d)
	}
	t.Setenv("STATE_DIRECTORY", "")
	t.Setenv("XDG_STATE_HOME", "/xdg/state")
	if d := parse(); d != filepath.Join("/xdg/state", "lw4o6-aftr") {
		t.Errorf("with XDG_STATE_HOME: %q", d)
	}
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "/home/op")
	if d := parse(); d != filepath.Join("/home/op", ".local", "state", "lw4o6-aftr") {
		t.Errorf("with HOME: %q", d)
	}
	if d := parse("--state-dir", ""); d != "" {
		t.Errorf(`--state-dir "": %q`, d)
	}
	if d := parse("--state-dir", "/srv/j"); d != "/srv/j" {
		t.Errorf("--state-dir /srv/j: %q", d)
	}
}
