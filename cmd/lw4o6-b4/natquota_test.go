package main

import (
	"io"
	"strings"
	"testing"

	"github.com/lw4o6/lw4o6/b4"
	"github.com/lw4o6/lw4o6/b4/nat"
)

// --nat-host-ports takes a count or a share, --nat-host-sessions a count;
// 0 is no quota; the defaults are the nat package's, except with the SOCKS5
// front end alone.
func TestNATQuotaFlags(t *testing.T) {
	base := []string{"--aftr", "2001:db8::1", "--tun", "lw4o6"}
	for _, c := range []struct {
		args []string
		want nat.Config
	}{
		{nil, nat.Config{HostPortShare: nat.DefaultHostPortShare, HostSessions: nat.DefaultHostSessions}},
		// SOCKS5 alone: its one LAN address is every flow's.
		{[]string{"--tun=", "--socks5", "127.0.0.1:1080"}, nat.Config{}},
		{[]string{"--tun=", "--socks5", "127.0.0.1:1080", "--nat-host-sessions", "100"}, nat.Config{HostSessions: 100}},
		{[]string{"--nat-host-ports", "512", "--nat-host-sessions", "2000"}, nat.Config{HostPorts: 512, HostSessions: 2000}},
		{[]string{"--nat-host-ports", "50%"}, nat.Config{HostPortShare: 0.5, HostSessions: nat.DefaultHostSessions}},
		{[]string{"--nat-host-ports", "0", "--nat-host-sessions", "0"}, nat.Config{}},
	} {
		o, err := parseFlags(append(append([]string(nil), base...), c.args...), io.Discard)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		cfg := b4.DefaultConfig()
		o.natQuota.apply(&cfg)
		got := cfg.NAT
		if got.HostPorts != c.want.HostPorts || got.HostPortShare != c.want.HostPortShare || got.HostSessions != c.want.HostSessions {
			t.Errorf("%v: NAT quotas %d, %v, %d; want %d, %v, %d", c.args, got.HostPorts, got.HostPortShare, got.HostSessions,
				c.want.HostPorts, c.want.HostPortShare, c.want.HostSessions)
		}
	}
	for _, bad := range [][]string{
		{"--nat-host-ports", "-1"}, {"--nat-host-ports", "101%"}, {"--nat-host-ports", "many"},
		{"--nat-host-ports", "70000"}, {"--nat-host-ports", "NaN%"}, {"--nat-host-sessions", "-1"},
	} {
		_, err := parseFlags(append(append([]string(nil), base...), bad...), io.Discard)
		if err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%v: %v, want an error naming %s", bad, err, bad[0])
		}
	}
}
