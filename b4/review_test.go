package b4

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
)

// An ICMPv6 1/5 (lostBinding: provisioned false, NAT cleared) that lands
// while a renewal is being installed leaves provisioned true over a cleared
// NAT; the renewal that follows (same address and set) must give the NAT its
// set back, or every outbound packet is dropped until the set changes.
func TestReviewInstallAfterRacingLostBinding(t *testing.T) {
	e := newEnv(t, newHandler(3600), nil)
	p := provisioner{b: e.b}
	m := &pcp.Mapping{
		ExternalIP: testPublic, ExternalPort: testFirst,
		PortSet:  &pcp.PortSet{Size: testSize, FirstInternalPort: testFirst},
		Lifetime: time.Hour, Received: e.b.now(),
	}
	set, err := validateGrant(m, 65535)
	if err != nil {
		t.Fatal(err)
	}
	p.install(m, set)
	lanSrc := netip.AddrPortFrom(testHost, 5000)
	remote := netip.AddrPortFrom(testRemote, 53)
	outbound(t, e, lanSrc, remote, 0, 64, []byte("before"))

	// The interleaving install(renewal) | lostBinding ends here:
	e.b.nat.Clear()
	e.b.provisioned.Store(true)

	m.Received = e.b.now()
	p.install(m, set) // the renewal after the re-request
	outbound(t, e, lanSrc, remote, 0, 64, []byte("after"))
}

// FuzzReviewDataPath: no LAN or access packet panics the B4 (DESIGN.md:
// no input panics the process).
func FuzzReviewDataPath(f *testing.F) {
	f.Add(false, udp4(netip.AddrPortFrom(testHost, 5000), netip.AddrPortFrom(testRemote, 53), 0, 64, []byte("q")))
	f.Add(true, udp4(netip.AddrPortFrom(testRemote, 53), netip.AddrPortFrom(testPublic, testFirst), 0, 64, []byte("a")))
	f.Add(true, []byte{0x45})
	e := newEnv(f, newHandler(3600), nil)
	p := provisioner{b: e.b}
	m := &pcp.Mapping{
		ExternalIP: testPublic, ExternalPort: testFirst,
		PortSet:  &pcp.PortSet{Size: testSize, FirstInternalPort: testFirst},
		Lifetime: time.Hour, Received: e.b.now(),
	}
	set, _ := validateGrant(m, 65535)
	p.install(m, set)
	f.Fuzz(func(t *testing.T, access bool, data []byte) {
		if access {
			e.b.FromAccess(softwire(testAFTR, testB4, 0, data))
			e.b.FromAccess(append([]byte(nil), data...))
		} else {
			e.b.FromLAN(append([]byte(nil), data...))
		}
		for len(e.lan.ch) > 0 {
			<-e.lan.ch
		}
		for len(e.aftr.data) > 0 {
			checkOwnSource(t, <-e.aftr.data)
		}
	})
}

// checkOwnSource fails unless pkt, a softwire packet the B4 sent, carries
// IPv4 from the B4's public address and a port (or echo identifier, or for
// an ICMP error the quoted packet's destination port) of its set: the B4
// never sends into the softwire a source outside its set (issue 11).
func checkOwnSource(t *testing.T, pkt []byte) {
	t.Helper()
	var outer packet.IPv6
	ip4, err := packet.Decapsulate(pkt, &outer)
	if err != nil {
		return // an IPv6 fragment of a larger softwire packet
	}
	if ip4.SrcAddr() != testPublic {
		t.Fatalf("softwire packet from %v, not the public %v", ip4.SrcAddr(), testPublic)
	}
	if ip4.FragOffset() != 0 {
		return // only the first fragment names a port
	}
	flow, err := ip4.Ports()
	if err != nil {
		return // no port to check (an IPv4 protocol without ports)
	}
	port := flow.SrcPort
	if flow.ICMPError {
		port = flow.Inner.DstPort
	}
	if port < testFirst || uint32(port) >= uint32(testFirst)+uint32(testSize) {
		t.Fatalf("softwire packet from port %d, outside the set %d+%d", port, testFirst, testSize)
	}
}

// nat.Table removes expired sessions only in Expire ("the B4 calls it every
// few seconds"), a lookup that meets them, or a full set: Run must sweep,
// or every expired session and mapping stays in memory.
func TestReviewRunExpiresNAT(t *testing.T) {
	defer func(d time.Duration) { natExpireEvery = d }(natExpireEvery)
	natExpireEvery = 20 * time.Millisecond
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newEnv(t, newHandler(3600), func(c *Config) { c.Now = clock })
	e.provisioned()
	outbound(t, e, netip.AddrPortFrom(testHost, 5000), netip.AddrPortFrom(testRemote, 53), 0, 64, []byte("q"))
	if s := e.b.Status().NAT; s.UDPSessions != 1 {
		t.Fatalf("NAT %+v, want one UDP session", s)
	}
	mu.Lock()
	now = now.Add(30 * time.Minute) // past any UDP timeout, within the binding
	mu.Unlock()
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s := e.b.Status().NAT
		if s.UDPSessions == 0 && s.Mappings == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("NAT %+v: the expired session was never removed", s)
		}
	}
}
