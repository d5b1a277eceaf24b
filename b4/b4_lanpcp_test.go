package b4

import (
	"net/netip"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/b4/lanpcp"
	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
)

// lanPCP sends a PCP or NAT-PMP datagram from a LAN host to the gateway
// through FromLAN and returns the answer the B4 puts on the LAN.
func lanPCP(t *testing.T, e *env, from netip.Addr, payload []byte) []byte {
	t.Helper()
	e.b.FromLAN(udp4(netip.AddrPortFrom(from, 40000), netip.AddrPortFrom(testGW, 5351), 0, 64, payload))
	ip4 := e.nextLAN(2 * time.Second)
	var u packet.UDP
	if err := packet.ParseUDP4(ip4, &u); err != nil || ip4.SrcAddr() != testGW || ip4.DstAddr() != from || u.SrcPort != 5351 || u.DstPort != 40000 {
		t.Fatalf("answer %v -> %v (%v): want %v:5351 -> %v:40000", ip4.SrcAddr(), ip4.DstAddr(), err, testGW, from)
	}
	return u.Data
}

func lanMap(t *testing.T, from netip.Addr, proto uint8, iport uint16, lifetime uint32) []byte {
	b, err := pcp.Marshal(&pcp.Message{Opcode: pcp.OpMap, Lifetime: lifetime, ClientIP: from,
		Map: &pcp.MapData{Nonce: [12]byte{9}, Protocol: proto, InternalPort: iport, ExternalIP: netip.IPv4Unspecified()}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// PROTOCOL.md §8 item 7, RFC 6887 §7.4: before the AFTR answers, the LAN
// server answers NETWORK_FAILURE (short lifetime) on the LAN, and nothing
// goes to the AFTR; once provisioned, the MAP succeeds with the B4's
// public address and a port of its set, and the announcements go out.
func TestLANPCPThroughFromLAN(t *testing.T) {
	h := newHandler(3600)
	e := newEnv(t, h, nil)
	e.aftr.silent.Store(true)
	e.run()
	m, err := pcp.Parse(lanPCP(t, e, testHost, lanMap(t, testHost, 6, 80, 600)))
	if err != nil || m.Result != pcp.NetworkFailure || m.Lifetime != 30 {
		t.Fatalf("unprovisioned: %v %v", m, err)
	}
	if a := lanPCP(t, e, testHost, []byte{0, 0}); len(a) != 12 || a[3] != 3 {
		t.Fatalf("NAT-PMP address unprovisioned: %x", a)
	}
	e.aftr.silent.Store(false)
	waitStatus(t, e.b, 10*time.Second, "provisioned", func(s Status) bool { return s.Provisioned })
	m, err = pcp.Parse(lanPCP(t, e, testHost, lanMap(t, testHost, 6, 80, 600)))
	if err != nil || m.Result != pcp.Success || m.Map.ExternalIP != testPublic || m.Map.ExternalPort < testFirst || m.Map.ExternalPort >= testFirst+testSize {
		t.Fatalf("provisioned: %+v %v", m, err)
	}
	st := e.b.Status()
	if len(st.LANMappings) != 1 || st.LANMappings[0].External != m.Map.ExternalPort || st.Pool.Explicit != 1 {
		t.Fatalf("status %+v %+v", st.LANMappings, st.Pool)
	}
	select {
	case a := <-e.lan.ann:
		ip4, _ := packet.ParseIPv4(a)
		var u packet.UDP
		if packet.ParseUDP4(ip4, &u) != nil || ip4.SrcAddr() != testGW || u.SrcPort != 5351 || u.DstPort != 5350 || ip4.TTL() != 1 {
			t.Fatalf("announcement %x", a)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no announcement on the LAN")
	}
	if pkts(e.b, "in-lan-pcp-ipv4") != 3 {
		t.Fatalf("counters %v", e.b.Status().Counters)
	}
	// Three answers, the start-up ANNOUNCE, ANNOUNCE and NAT-PMP address
	// after provisioning.
	waitFor(t, 5*time.Second, "answers and announcements counted", func() bool { return pkts(e.b, "out-lan-pcp-ipv4") >= 6 })
}

// Static forwards are installed at provisioning and listed in the status.
func TestStaticForwardInstalled(t *testing.T) {
	h := newHandler(3600)
	e := newEnv(t, h, func(c *Config) {
		c.LANPCP.Static = []lanpcp.Forward{{Proto: 17, External: 80, Internal: netip.AddrPortFrom(testHost, 80)}}
	})
	e.provisioned()
	st := waitStatus(t, e.b, 5*time.Second, "forwards", func(s Status) bool { return len(s.Forwards) == 1 })
	f := st.Forwards[0]
	if f.Err != nil || f.External < testFirst || f.External >= testFirst+testSize {
		t.Fatalf("forward %+v: want a port of the set (80 is outside it)", f)
	}
	// Inbound to the forward reaches the LAN host.
	e.b.FromAccess(softwire(testAFTR, testB4, 0, udp4(netip.AddrPortFrom(testRemote, 5555), netip.AddrPortFrom(testPublic, f.External), 0, 50, []byte("in"))))
	ip4 := e.nextLAN(2 * time.Second)
	if ip4.DstAddr() != testHost {
		t.Fatalf("forwarded to %v", ip4.DstAddr())
	}
}
