package lanpcp

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/pcp"
	"github.com/lw4o6/lw4o6/stack/portset"
)

// FuzzHandle feeds two arbitrary datagrams (PCP, NAT-PMP or neither) from
// LAN hosts to a server over a small set that holds 5350 and 5351, with a
// static forward that wants 5351 and THIRD_PARTY allowed for one host.
// Invariants: no panic; every answer is at most 1100 octets; no mapping in
// the NAT and no successful answer ever names a port outside the set or
// 5350/5351.
func FuzzHandle(f *testing.F) {
	seedPCP := func(op pcp.Opcode, proto uint8, iport, sugg uint16, lifetime uint32, opts ...pcp.Option) []byte {
		m := &pcp.Message{Opcode: op, Lifetime: lifetime, ClientIP: hostA,
			Map:     &pcp.MapData{Nonce: nonce1, Protocol: proto, InternalPort: iport, ExternalPort: sugg, ExternalIP: netip.IPv4Unspecified()},
			Options: opts}
		if op == pcp.OpPeer {
			m.Peer = &pcp.PeerData{RemotePort: 80, RemoteIP: remote}
		}
		b, _ := pcp.Marshal(m)
		return b
	}
	f.Add(seedPCP(pcp.OpMap, 6, 80, 5351, 600, pcp.PreferFailureOption()), seedPCP(pcp.OpMap, 6, 80, 0, 0), byte(0))
	f.Add(seedPCP(pcp.OpMap, 17, 53, 5350, 600, pcp.FilterOption(pcp.FilterFor(netip.PrefixFrom(remote, 32), 0)), pcp.DescriptionOption("x")), seedPCP(pcp.OpPeer, 17, 53, 0, 60), byte(1))
	f.Add(pmp(1, 5351, 5351, 60), pmp(2, 0, 0, 0), byte(0))
	f.Add([]byte{0, 0}, []byte{0, 7, 0, 0}, byte(1))
	f.Fuzz(fuzzTwoRequests)
}

// FuzzNATPMP is FuzzHandle with both datagrams made NAT-PMP (version 0),
// so that the fuzzer spends its time in the NAT-PMP codec and policy.
func FuzzNATPMP(f *testing.F) {
	f.Add(pmp(1, 5351, 5351, 60), pmp(1, 5351, 0, 0), byte(0))
	f.Add(pmp(2, 80, 5344, 1), pmp(2, 0, 0, 0), byte(3))
	f.Add([]byte{0, 0}, []byte{0, 200}, byte(1))
	f.Fuzz(func(t *testing.T, a, b []byte, who byte) {
		for _, x := range [][]byte{a, b} {
			if len(x) > 0 {
				x[0] = 0
			}
		}
		fuzzTwoRequests(t, a, b, who)
	})
}

func fuzzTwoRequests(t *testing.T, a, b []byte, who byte) {
	{
		small := portset.Range{First: 5344, Size: 16} // 5344-5359
		fx := newFixture(t, false, func(c *Config) {
			c.MaxPerHost = 4
			c.ThirdParty = []netip.Prefix{netip.PrefixFrom(hostB, 32)}
			c.Static = []Forward{{Proto: 17, External: 5351, Internal: netip.AddrPortFrom(hostB, 5351)}}
		})
		fx.nat.SetExternal(public, small)
		fx.srv.Provisioned(public, small)
		srcs := [2]netip.Addr{hostA, hostB}
		for i, req := range [][]byte{a, b} {
			src := srcs[(int(who)>>i)&1]
			out := fx.srv.Handle(req, netip.AddrPortFrom(src, 5350))
			if len(out) > pcp.MaxMessageLen {
				t.Fatalf("answer of %d octets", len(out))
			}
			checkAnswerPorts(t, out, small)
			for _, mi := range fx.nat.ExplicitMappings() {
				if !small.Contains(mi.External) || avoidPCP(mi.External) {
					t.Fatalf("explicit mapping on %d: %+v", mi.External, mi)
				}
			}
			fx.clk.Advance(time.Duration(who) * time.Second)
		}
	}
}

func checkAnswerPorts(t *testing.T, out []byte, set portset.Set) {
	switch {
	case len(out) == 0:
	case out[0] == 0 && len(out) == 16 && binary.BigEndian.Uint16(out[2:]) == 0:
		if p := binary.BigEndian.Uint16(out[10:]); p != 0 && (!set.Contains(p) || avoidPCP(p)) {
			t.Fatalf("NAT-PMP answer names port %d", p)
		}
	case out[0] == pcp.Version:
		m, err := pcp.Parse(out)
		if err != nil {
			t.Fatalf("PCP answer does not parse: %v", err)
		}
		if m.Result == pcp.Success && m.Map != nil && m.Lifetime != 0 {
			if p := m.Map.ExternalPort; !set.Contains(p) || avoidPCP(p) {
				t.Fatalf("PCP answer names port %d", p)
			}
		}
	}
}
