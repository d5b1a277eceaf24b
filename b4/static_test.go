package b4

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/portset"
)

// A B4 with a static binding (as DHCPv6 S46 gives one) sends no PCP,
// reports how it was provisioned, and NATs LAN traffic into the set.
func TestStaticProvisioningS46Source(t *testing.T) {
	set := portset.Range{First: 5120, Size: 1024}
	e := newEnv(t, newHandler(120), func(c *Config) {
		c.StaticIPv4, c.StaticPorts, c.StaticSource = testPublic, set, "dhcpv6"
	})
	e.run()
	st := waitStatus(t, e.b, 2*time.Second, "provisioned", func(s Status) bool { return s.Provisioned })
	if st.Provisioning != "dhcpv6" || st.PublicIPv4 != testPublic || st.Ports != set {
		t.Fatalf("status %+v", st)
	}
	e.b.FromLAN(udp4(netip.AddrPortFrom(testHost, 5000), netip.AddrPortFrom(testRemote, 53), 0, 64, []byte("q")))
	out := e.nextData(2 * time.Second)
	var ip6 packet.IPv6
	if err := packet.ParseIPv6(out, &ip6); err != nil {
		t.Fatal(err)
	}
	ip4, err := packet.ParseIPv4(ip6.Payload)
	if err != nil {
		t.Fatal(err)
	}
	pl := ip4.Payload()
	sport := uint16(pl[0])<<8 | uint16(pl[1])
	if ip4.Src() != testPublic.As4() || !set.Contains(sport) || ip6.Dst != testAFTR.As16() {
		t.Errorf("sent %v:%d to %v; want %v in %v to %v", netip.AddrFrom4(ip4.Src()), sport, netip.AddrFrom16(ip6.Dst), testPublic, set, testAFTR)
	}
	e.noReq(300 * time.Millisecond)
}

// Under PCP the status says so.
func TestProvisioningPCPInStatus(t *testing.T) {
	e := newEnv(t, newHandler(120), nil)
	_, st := e.provisioned()
	if st.Provisioning != "pcp" {
		t.Fatalf("Provisioning %q, want pcp", st.Provisioning)
	}
}

func TestStaticConfigRefused(t *testing.T) {
	for _, c := range []Static{
		{StaticIPv4: netip.MustParseAddr("192.0.0.2"), StaticPorts: portset.Range{First: 1024, Size: 1024}},
		{StaticIPv4: netip.MustParseAddr("2001:db8::1"), StaticPorts: portset.Range{First: 1024, Size: 1024}},
		{StaticIPv4: testPublic, StaticPorts: portset.Range{First: 65535, Size: 2}},
		{StaticIPv4: testPublic},
		{StaticPorts: portset.Range{First: 1024, Size: 1024}},
	} {
		cfg := testConfig()
		cfg.Static = c
		if _, err := New(cfg, newChanLink(), newChanLink()); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: err %v", c, err)
		}
	}
}
