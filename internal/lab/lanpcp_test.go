package lab

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/b4"
	"github.com/lw4o6/lw4o6/stack/pcp"
	"github.com/lw4o6/lw4o6/stack/portset"
	"github.com/lw4o6/lw4o6/stack/sim"
)

// The B4 as its LAN's port-mapping server, end to end: LAN hosts (gVisor
// stacks) speak PCP and NAT-PMP to their gateway's UDP 5351, the Internet
// host reaches their services through the mappings, across the real AFTR.

// lanClient sends requests from a LAN host's UDP socket to its gateway.
type lanClient struct {
	t    *testing.T
	host *sim.Host
	addr netip.Addr
	c    net.Conn
}

func newLANClient(t *testing.T, h *sim.Host, addr, gw netip.Addr) *lanClient {
	c, err := h.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(gw, 5351))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &lanClient{t: t, host: h, addr: addr, c: c}
}

// do sends req and returns the answer, retransmitting as RFC 6887 §8.1.1
// clients do.
func (l *lanClient) do(req []byte) []byte {
	l.t.Helper()
	buf := make([]byte, 1500)
	for try := 0; try < 6; try++ {
		if _, err := l.c.Write(req); err != nil {
			l.t.Fatal(err)
		}
		l.c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := l.c.Read(buf)
		if err == nil {
			return append([]byte(nil), buf[:n]...)
		}
	}
	l.t.Fatalf("no answer from the gateway to %x", req)
	return nil
}

func (l *lanClient) pcp(m *pcp.Message) *pcp.Message {
	l.t.Helper()
	m.ClientIP = l.addr
	b, err := pcp.Marshal(m)
	if err != nil {
		l.t.Fatal(err)
	}
	out, err := pcp.Parse(l.do(b))
	if err != nil {
		l.t.Fatal(err)
	}
	return out
}

func (l *lanClient) mapReq(proto uint8, iport uint16, lifetime uint32, nonce byte, opts ...pcp.Option) *pcp.Message {
	l.t.Helper()
	return l.pcp(&pcp.Message{Opcode: pcp.OpMap, Lifetime: lifetime, Options: opts,
		Map: &pcp.MapData{Nonce: [12]byte{nonce}, Protocol: proto, InternalPort: iport, ExternalIP: netip.IPv4Unspecified()}})
}

// mustMap maps and checks the answer: the B4's public address, a port of
// its set, never 5350/5351.
func mustMap(t *testing.T, l *lanClient, n *Node, proto uint8, iport uint16, nonce byte) uint16 {
	t.Helper()
	m := l.mapReq(proto, iport, 600, nonce, pcp.DescriptionOption("lab"))
	st := n.B4.Status()
	if m.Result != pcp.Success || m.Map.ExternalIP != st.PublicIPv4 || !st.Ports.Contains(m.Map.ExternalPort) ||
		m.Map.ExternalPort == 5350 || m.Map.ExternalPort == 5351 {
		t.Fatalf("MAP %d/%d: %v %v:%d; B4 holds %v %v", proto, iport, m.Result, m.Map.ExternalIP, m.Map.ExternalPort, st.PublicIPv4, st.Ports)
	}
	return m.Map.ExternalPort
}

// serveTCPOnce accepts one connection on the LAN host and sends word.
func serveTCPOnce(t *testing.T, h *sim.Host, at netip.AddrPort, word uint64) {
	ln, err := h.ListenTCP(at)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], word)
		c.Write(b[:])
	}()
}

// dialFromInternet connects from the Internet host and reads the word.
func dialFromInternet(ctx context.Context, w *World, to netip.AddrPort) (uint64, error) {
	c, err := w.Server.DialTCP(ctx, to)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || len(got) != 8 {
		return 0, fmt.Errorf("read %x: %v", got, err)
	}
	return binary.BigEndian.Uint64(got), nil
}

// udpEchoOnce echoes datagrams on the LAN host.
func udpEcho(t *testing.T, h *sim.Host, at netip.AddrPort) {
	c, err := h.DialUDP(at, netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			c.WriteTo(buf[:n], from)
		}
	}()
}

// udpFromInternet sends a datagram from the Internet host and waits for
// its echo.
func udpFromInternet(t *testing.T, w *World, to netip.AddrPort) error {
	c, err := w.Server.DialUDP(netip.AddrPort{}, to)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 100)
	for try := 0; try < 5; try++ {
		c.Write([]byte("through the mapping"))
		c.SetReadDeadline(time.Now().Add(time.Second))
		if n, err := c.Read(buf); err == nil && string(buf[:n]) == "through the mapping" {
			return nil
		}
	}
	return fmt.Errorf("no echo from %v", to)
}

// RFC 6887 §11, PROTOCOL.md §8 item 7: a LAN host's MAP gets a port of
// the B4's set; the Internet host reaches the LAN service through it over
// TCP and UDP; a second LAN host cannot delete it; the owner can.
func TestLANPCPMapReachesLANService(t *testing.T) {
	w := newWorld(t, Config{B4s: 1, PortsPerB4: 4096})
	ctx := testCtx(t)
	n := w.Nodes[0]
	l := newLANClient(t, n.Host, LANHostAddr(0), LANGateway(0))
	ext := mustMap(t, l, n, 6, 8080, 1)
	uext := mustMap(t, l, n, 17, 9000, 1)
	pub := n.B4.Status().PublicIPv4
	serveTCPOnce(t, n.Host, netip.AddrPortFrom(LANHostAddr(0), 8080), 0x4c414e)
	if got, err := dialFromInternet(ctx, w, netip.AddrPortFrom(pub, ext)); err != nil || got != 0x4c414e {
		t.Fatalf("TCP from the Internet to %v:%d: %x %v", pub, ext, got, err)
	}
	udpEcho(t, n.Host, netip.AddrPortFrom(LANHostAddr(0), 9000))
	if err := udpFromInternet(t, w, netip.AddrPortFrom(pub, uext)); err != nil {
		t.Fatalf("UDP from the Internet: %v", err)
	}
	st := n.B4.Status()
	if len(st.LANMappings) != 2 || st.Pool.Explicit != 2 || st.Pool.Size != 4096 {
		t.Fatalf("status: mappings %v pool %+v", st.LANMappings, st.Pool)
	}
	for _, m := range st.LANMappings {
		if m.Description != "lab" || m.Owner != "pcp "+LANHostAddr(0).String() {
			t.Errorf("status mapping %v", m)
		}
	}

	// A second LAN host: its delete of "8080" is its own (nothing), and a
	// request naming the first host is ADDRESS_MISMATCH.
	h2addr := netip.AddrFrom4([4]byte{198, 18, 0, 3})
	h2, err := sim.NewHost(n.LAN, "host-0b", 1460, testLogger, netip.PrefixFrom(h2addr, 24))
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	l2 := newLANClient(t, h2, h2addr, LANGateway(0))
	if m := l2.mapReq(6, 8080, 0, 1); m.Result != pcp.Success {
		t.Fatalf("second host's delete: %v", m.Result)
	}
	l2.addr = LANHostAddr(0)
	if m := l2.mapReq(6, 8080, 0, 1); m.Result != pcp.AddressMismatch {
		t.Fatalf("second host naming the first: %v", m.Result)
	}
	// The first host with another nonce cannot either (§11.3).
	if m := l.mapReq(6, 8080, 0, 2); m.Result != pcp.NotAuthorized {
		t.Fatalf("delete with another nonce: %v", m.Result)
	}
	if _, ok := mappingOf(n.B4, 6, 8080); !ok {
		t.Fatal("mapping gone after the refused deletes")
	}
	if m := l.mapReq(6, 8080, 0, 1); m.Result != pcp.Success {
		t.Fatalf("owner's delete: %v", m.Result)
	}
	if _, ok := mappingOf(n.B4, 6, 8080); ok {
		t.Fatal("mapping still listed after its owner deleted it")
	}
}

func mappingOf(b *b4.B4, proto uint8, iport uint16) (uint16, bool) {
	for _, m := range b.Status().LANMappings {
		if m.Proto == proto && m.Internal.Port() == iport {
			return m.External, true
		}
	}
	return 0, false
}

// RFC 6887 §12.3: PEER creates the outbound mapping the host's traffic then
// uses; §15: the mapping's lifetime runs out (a short configured minimum).
func TestLANPCPPeerAndExpiry(t *testing.T) {
	w := newWorld(t, Config{B4s: 1, PortsPerB4: 4096, B4: func(_ int, c *b4.Config) {
		c.LANPCP.MinLifetime = time.Second
	}})
	n := w.Nodes[0]
	l := newLANClient(t, n.Host, LANHostAddr(0), LANGateway(0))
	m := l.pcp(&pcp.Message{Opcode: pcp.OpPeer, Lifetime: 600,
		Map:  &pcp.MapData{Nonce: [12]byte{7}, Protocol: 17, InternalPort: 7777, ExternalIP: netip.IPv4Unspecified()},
		Peer: &pcp.PeerData{RemoteIP: ServerAddr, RemotePort: UDPPort}})
	st := n.B4.Status()
	if m.Result != pcp.Success || m.Lifetime != 600 || !st.Ports.Contains(m.Map.ExternalPort) {
		t.Fatalf("PEER: %v lifetime %d port %d", m.Result, m.Lifetime, m.Map.ExternalPort)
	}
	c, err := n.Host.DialUDP(netip.AddrPortFrom(LANHostAddr(0), 7777), netip.AddrPortFrom(ServerAddr, UDPPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("peer"))
	waitFor(t, "the server to see the PEER's port", func() bool {
		for _, s := range w.Server.Seen() {
			if s.Proto == "udp" && s.Remote == netip.AddrPortFrom(st.PublicIPv4, m.Map.ExternalPort) {
				return true
			}
		}
		return false
	})

	// A 2-second explicit mapping expires.
	short := l.mapReq(17, 9100, 2, 1)
	if short.Result != pcp.Success || short.Lifetime != 2 {
		t.Fatalf("short MAP: %v %d", short.Result, short.Lifetime)
	}
	if _, ok := mappingOf(n.B4, 17, 9100); !ok {
		t.Fatal("mapping not listed")
	}
	waitFor(t, "the mapping to expire", func() bool { _, ok := mappingOf(n.B4, 17, 9100); return !ok })
	before := n.B4.Status().Counters["drop-nat-inbound-ipv4-packets"]
	udpEcho(t, n.Host, netip.AddrPortFrom(LANHostAddr(0), 9100))
	if err := udpFromInternet(t, w, netip.AddrPortFrom(st.PublicIPv4, short.Map.ExternalPort)); err == nil {
		t.Fatal("expired mapping still forwards")
	}
	if n.B4.Status().Counters["drop-nat-inbound-ipv4-packets"] <= before {
		t.Fatal("no inbound drop counted for the expired mapping")
	}
}

// RFC 6887 §11.3, §17.2: a host past its quota gets USER_EX_QUOTA.
func TestLANPCPQuota(t *testing.T) {
	w := newWorld(t, Config{B4s: 1, PortsPerB4: 4096, B4: func(_ int, c *b4.Config) { c.LANPCP.MaxPerHost = 2 }})
	n := w.Nodes[0]
	l := newLANClient(t, n.Host, LANHostAddr(0), LANGateway(0))
	mustMap(t, l, n, 6, 1000, 1)
	mustMap(t, l, n, 17, 1000, 1)
	if m := l.mapReq(6, 1001, 600, 1); m.Result != pcp.UserExQuota || m.Lifetime != 30 {
		t.Fatalf("third mapping: %v lifetime %d, want USER_EX_QUOTA 30", m.Result, m.Lifetime)
	}
}

// RFC 6886: a NAT-PMP client (version 0) gets the external address and a
// TCP mapping from the same table; the Internet host reaches the service.
func TestLANNATPMP(t *testing.T) {
	w := newWorld(t, Config{B4s: 1, PortsPerB4: 4096})
	ctx := testCtx(t)
	n := w.Nodes[0]
	st := n.B4.Status()
	l := newLANClient(t, n.Host, LANHostAddr(0), LANGateway(0))
	a := l.do([]byte{0, 0})
	if len(a) != 12 || a[1] != 128 || binary.BigEndian.Uint16(a[2:]) != 0 || netip.AddrFrom4([4]byte(a[8:])) != st.PublicIPv4 {
		t.Fatalf("external address: %x, want %v", a, st.PublicIPv4)
	}
	req := make([]byte, 12)
	req[1] = 2
	binary.BigEndian.PutUint16(req[4:], 8443)
	binary.BigEndian.PutUint32(req[8:], 3600)
	r := l.do(req)
	ext := binary.BigEndian.Uint16(r[10:])
	if len(r) != 16 || r[1] != 130 || binary.BigEndian.Uint16(r[2:]) != 0 || !st.Ports.Contains(ext) || binary.BigEndian.Uint32(r[12:]) != 3600 {
		t.Fatalf("TCP mapping: %x", r)
	}
	serveTCPOnce(t, n.Host, netip.AddrPortFrom(LANHostAddr(0), 8443), 0x504d50)
	if got, err := dialFromInternet(ctx, w, netip.AddrPortFrom(st.PublicIPv4, ext)); err != nil || got != 0x504d50 {
		t.Fatalf("TCP through the NAT-PMP mapping: %x %v", got, err)
	}
}

// RFC 6887 §8.5, §14.1.3, RFC 6886 §3.2.1: the AFTR gives the B4 another
// set (its old one went to someone else); the LAN server resets its Epoch
// and multicasts ANNOUNCE and the NAT-PMP address on the LAN; the client
// maps again and gets a port of the new set that the Internet reaches.
func TestLANAnnounceAfterNewSet(t *testing.T) {
	w := newWorld(t, Config{B4s: 1, PortsPerB4: 4096})
	ctx := testCtx(t)
	n := w.Nodes[0]
	l := newLANClient(t, n.Host, LANHostAddr(0), LANGateway(0))
	old := n.B4.Status()
	oldExt := mustMap(t, l, n, 6, 8080, 1)

	ann, err := n.Host.DialUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 5350), netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	defer ann.Close()

	// The operator moves the set to another B4; the next packet from this
	// B4 draws ICMPv6 1/5 and it provisions again.
	if !w.AFTR.RemoveBinding(n.Addr) {
		t.Fatal("no binding")
	}
	psid, err := psidOf(old.Ports)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.AFTR.AddStatic(bindings.Binding{B4: netip.MustParseAddr("2001:db8:b4::ff"), IPv4: old.PublicIPv4, PSID: psid}); err != nil {
		t.Fatal(err)
	}
	w.Exchange(ctx, 0, 1024) // may fail while the B4 provisions again
	waitFor(t, "a new set", func() bool {
		st := n.B4.Status()
		return st.Provisioned && (st.PublicIPv4 != old.PublicIPv4 || st.Ports != old.Ports)
	})
	cur := n.B4.Status()

	// ANNOUNCE (Epoch reset) and the NAT-PMP address on 224.0.0.1:5350.
	var sawPCP, sawPMP bool
	buf := make([]byte, 1500)
	deadline := time.Now().Add(20 * time.Second)
	for !(sawPCP && sawPMP) && time.Now().Before(deadline) {
		ann.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := ann.Read(buf)
		if err != nil {
			continue
		}
		p := buf[:k]
		if m, err := pcp.Parse(p); err == nil && m.Response && m.Opcode == pcp.OpAnnounce && m.Result == pcp.Success && m.Epoch < 10 {
			sawPCP = true
		}
		if len(p) == 12 && p[0] == 0 && p[1] == 128 && netip.AddrFrom4([4]byte(p[8:])) == cur.PublicIPv4 {
			sawPMP = true
		}
	}
	if !sawPCP || !sawPMP {
		t.Fatalf("on the LAN after the new set: ANNOUNCE %v, NAT-PMP address %v", sawPCP, sawPMP)
	}
	if _, ok := mappingOf(n.B4, 6, 8080); ok {
		t.Fatal("the old set's mapping survived")
	}
	// The client re-creates its mapping (§14.1.3), suggesting the old one.
	m := l.pcp(&pcp.Message{Opcode: pcp.OpMap, Lifetime: 600,
		Map: &pcp.MapData{Nonce: [12]byte{1}, Protocol: 6, InternalPort: 8080, ExternalPort: oldExt, ExternalIP: old.PublicIPv4}})
	if m.Result != pcp.Success || m.Map.ExternalIP != cur.PublicIPv4 || !cur.Ports.Contains(m.Map.ExternalPort) {
		t.Fatalf("re-map: %v %v:%d, B4 holds %v %v", m.Result, m.Map.ExternalIP, m.Map.ExternalPort, cur.PublicIPv4, cur.Ports)
	}
	serveTCPOnce(t, n.Host, netip.AddrPortFrom(LANHostAddr(0), 8080), 0x4e4557)
	if got, err := dialFromInternet(ctx, w, netip.AddrPortFrom(cur.PublicIPv4, m.Map.ExternalPort)); err != nil || got != 0x4e4557 {
		t.Fatalf("TCP to the re-created mapping: %x %v", got, err)
	}
}

// psidOf is the RFC 7597 (a=0) PSID of an aligned power-of-two block.
func psidOf(r portset.Range) (portset.PSID, error) {
	k := uint8(0)
	for s := r.Size; s < 65536; s <<= 1 {
		k++
	}
	return portset.NewPSID(0, k, uint16(uint32(r.First)/r.Size))
}
