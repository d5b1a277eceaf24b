package lab

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/aftr"
	"github.com/lw4o6/lw4o6/b4"

	"github.com/lw4o6/lw4o6/stack/packet"
)

func newWorld(t *testing.T, cfg Config) *World {
	t.Helper()
	if cfg.Pool == (netip.Prefix{}) {
		cfg.Pool = netip.MustParsePrefix("192.0.2.0/30")
	}
	cfg.Logger = testLogger
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WaitProvisioned(ctx); err != nil {
		t.Fatal(err)
	}
	return w
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// RFC 7596 §6.1, PROTOCOL.md §8 item 2: every B4 gets its own aligned set,
// disjoint from the others, never the block with ports 0-1023, several B4s
// sharing one IPv4 address.
func TestProvisionDisjointPortSets(t *testing.T) {
	w := newWorld(t, Config{B4s: 5, PortsPerB4: 16384})
	perAddr := map[netip.Addr]int{}
	for i, n := range w.Nodes {
		st := n.B4.Status()
		if !w.Pool().Contains(st.PublicIPv4) {
			t.Errorf("B4 %d got %v, outside the pool", i, st.PublicIPv4)
		}
		if st.Ports.Size != 16384 || st.Ports.First < 1024 || st.Ports.First%16384 != 0 {
			t.Errorf("B4 %d got ports %v: want an aligned block of 16384 above 1023", i, st.Ports)
		}
		perAddr[st.PublicIPv4]++
		for j, m := range w.Nodes[:i] {
			o := m.B4.Status()
			if o.PublicIPv4 == st.PublicIPv4 && o.Ports.Overlaps(st.Ports) {
				t.Errorf("B4 %d and %d overlap: %v %v and %v %v", j, i, o.PublicIPv4, o.Ports, st.PublicIPv4, st.Ports)
			}
		}
	}
	shared := false
	for _, c := range perAddr {
		shared = shared || c > 1
	}
	if !shared {
		t.Errorf("no IPv4 address shared among 5 B4s: %v", perAddr)
	}
	if got := len(w.AFTR.Bindings()); got != 5 {
		t.Errorf("AFTR holds %d bindings, want 5", got)
	}
}

// RFC 7596 §5.1 and §6.2: TCP, UDP and ping from every LAN host reach the
// Internet host from the B4's public address and ports inside its set.
func TestTrafficFromEveryLANHost(t *testing.T) {
	w := newWorld(t, Config{B4s: 3, PortsPerB4: 4096})
	ctx := testCtx(t)
	for i := range w.Nodes {
		if r := w.Exchange(ctx, i, 256<<10); r.Err != nil {
			t.Fatalf("host %d: %v", i, r.Err)
		}
	}
	seen := w.Server.Seen()
	for i, n := range w.Nodes {
		st := n.B4.Status()
		var tcp, udp bool
		for _, s := range seen {
			if s.Remote.Addr() != st.PublicIPv4 || !st.Ports.Contains(s.Remote.Port()) {
				continue
			}
			tcp = tcp || s.Proto == "tcp"
			udp = udp || s.Proto == "udp"
		}
		if !tcp || !udp {
			t.Errorf("B4 %d (%v %v): server saw tcp=%v udp=%v from its set; all seen: %v", i, st.PublicIPv4, st.Ports, tcp, udp, seen)
		}
		if st.NAT.Mappings == 0 {
			t.Errorf("B4 %d has no NAT sessions after its exchanges", i)
		}
	}
	for _, s := range seen {
		owned := false
		for _, n := range w.Nodes {
			st := n.B4.Status()
			owned = owned || (s.Remote.Addr() == st.PublicIPv4 && st.Ports.Contains(s.Remote.Port()))
		}
		if !owned {
			t.Errorf("server saw %s from %v, in no B4's set", s.Proto, s.Remote)
		}
	}
}

// RFC 7596 §6.2: a packet from one B4 using another B4's address and port
// is discarded, and the AFTR answers with ICMPv6 type 1 code 5. The packet
// was injected at the thief's port, not sent by its B4 under its binding
// (the inner source is the victim's address), so the thief's B4 counts the
// 1/5 and keeps its binding (issue 11 item 3).
func TestAFTRDropsAnotherB4sPort(t *testing.T) {
	w := newWorld(t, Config{B4s: 2, PortsPerB4: 4096})
	victim, thief := w.Nodes[0].B4.Status(), w.Nodes[1]
	stolen := victim.Ports.First + 7
	udp := packet.AppendUDP4(nil, 0, victim.PublicIPv4.As4(), ServerAddr.As4(), stolen, UDPPort, 64, []byte("stolen"))
	pkt := packet.Encapsulate(udp, 0, thief.Addr.As16(), AFTRAddr.As16(), 64)
	before := w.AFTR.Counters()
	thief.port.Send(pkt)

	waitFor(t, "ICMPv6 1/5 at the thief", func() bool {
		return thief.B4.Status().Counters["drop-icmpv6-not-current-binding-packets"] >= 1
	})
	if st := thief.B4.Status(); !st.Provisioned || st.Counters["reprovision-packets"] != 0 {
		t.Errorf("a 1/5 about a packet its B4 never sent cost the thief its binding: %+v", st)
	}
	after := w.AFTR.Counters()
	if after["drop-no-source-softwire-ipv6-packets"] != before["drop-no-source-softwire-ipv6-packets"]+1 {
		t.Errorf("drop-no-source-softwire-ipv6 went %d -> %d", before["drop-no-source-softwire-ipv6-packets"], after["drop-no-source-softwire-ipv6-packets"])
	}
	if after["out-icmpv6-packets"] <= before["out-icmpv6-packets"] {
		t.Error("AFTR counted no ICMPv6 sent")
	}
	for _, s := range w.Server.Seen() {
		if s.Remote.Port() == stolen && s.Remote.Addr() == victim.PublicIPv4 {
			t.Fatalf("the stolen-port packet reached the Internet: %v", s)
		}
	}
	// The victim is untouched.
	if r := w.Exchange(testCtx(t), 0, 4096); r.Err != nil {
		t.Fatalf("victim after the attempt: %v", r.Err)
	}
}

// RFC 7596 §5.1 (and PROTOCOL.md §8 item 5): the AFTR lost a B4's binding;
// the B4's next packet draws an ICMPv6 1/5, the B4 provisions again and its
// traffic resumes.
func TestReprovisionAfterBindingRemoved(t *testing.T) {
	w := newWorld(t, Config{B4s: 2, PortsPerB4: 4096})
	ctx := testCtx(t)
	if r := w.Exchange(ctx, 0, 4096); r.Err != nil {
		t.Fatal(r.Err)
	}
	n := w.Nodes[0]
	if !w.AFTR.RemoveBinding(n.Addr) {
		t.Fatal("no binding to remove")
	}
	if r := w.Exchange(ctx, 0, 64<<10); r.Err != nil {
		t.Fatalf("after the binding was removed: %v", r.Err)
	}
	st := n.B4.Status()
	if st.Provisionings < 2 || st.Counters["in-icmpv6-no-binding-packets"] == 0 {
		t.Fatalf("provisionings %d, ICMPv6 1/5 received %d: want a re-provisioning triggered by ICMPv6",
			st.Provisionings, st.Counters["in-icmpv6-no-binding-packets"])
	}
	if len(w.AFTR.Bindings()) != 2 {
		t.Fatalf("AFTR holds %d bindings", len(w.AFTR.Bindings()))
	}
}

// RFC 7596 §6.2: the AFTR hairpins traffic between two B4s. Host 0 opens
// a TCP connection to B4 1's public address and a port forwarded to host 1.
func TestHairpinningBetweenB4s(t *testing.T) {
	w := newWorld(t, Config{B4s: 2, PortsPerB4: 4096})
	ctx := testCtx(t)
	h1 := w.Nodes[1].Host
	ln, err := h1.ListenTCP(netip.AddrPortFrom(LANHostAddr(1), 8080))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ext, err := w.Nodes[1].B4.AddPortForward(6, netip.AddrPortFrom(LANHostAddr(1), 8080), 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], 0x4c57344f36)
		c.Write(b[:])
	}()
	pub := w.Nodes[1].B4.Status().PublicIPv4
	c, err := w.Nodes[0].Host.DialTCP(ctx, netip.AddrPortFrom(pub, ext))
	if err != nil {
		t.Fatalf("dial %v:%d through the hairpin: %v", pub, ext, err)
	}
	defer c.Close()
	got, err := io.ReadAll(c)
	if err != nil || len(got) != 8 || binary.BigEndian.Uint64(got) != 0x4c57344f36 {
		t.Fatalf("read %x, %v", got, err)
	}
	if w.AFTR.Counters()["hairpin-ipv4-packets"] == 0 {
		t.Fatal("AFTR counted no hairpinned packets")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func init() {
	if os.Getenv("LW4O6_TEST_LOG") != "" {
		testLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

var testLogger *slog.Logger

// RFC 2473 §7.2, RFC 6333 §5.3/§6.3 (PROTOCOL.md §8 item 8): with LAN hosts
// at MTU 1500 over a 1280-octet tunnel, TCP (DF set) learns the tunnel MTU
// from the B4's and the AFTR's "fragmentation needed", and a 1400-octet
// UDP datagram (no DF) crosses as IPv6 fragments both ways, reassembled by
// the AFTR upstream and by the B4 downstream.
func TestTunnelMTU(t *testing.T) {
	w := newWorld(t, Config{B4s: 1, PortsPerB4: 4096, LANMTU: 1500,
		B4:   func(_ int, c *b4.Config) { c.TunnelMTU = 1280 },
		AFTR: func(c *aftr.Config) { c.AccessMTU = 1320 }})
	ctx := testCtx(t)
	var r Result
	if err := w.TCP(ctx, 0, 1<<20, &r); err != nil {
		t.Fatalf("TCP over the smaller tunnel: %v", err)
	}
	h := w.Nodes[0].Host
	c, err := h.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(ServerAddr, UDPPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 1400)
	for i := range msg {
		msg[i] = byte(i)
	}
	buf := make([]byte, 2000)
	ok := false
	for try := 0; try < 5 && !ok; try++ {
		c.Write(msg)
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		ok = err == nil && n == len(msg) && string(buf[:n]) == string(msg)
	}
	if !ok {
		t.Fatal("no 1400-octet UDP echo over the 1280-octet tunnel")
	}
	// The download's full-size segments drew the AFTR's "fragmentation
	// needed"; the echo crossed in IPv6 fragments both ways.
	b4c, ac := w.Nodes[0].B4.Status().Counters, w.AFTR.Counters()
	if ac["drop-over-mtu-but-dont-fragment-ipv4-packets"] == 0 {
		t.Errorf("AFTR sent no fragmentation needed: %v", ac)
	}
	if b4c["out-ipv6-frag-packets"] == 0 || b4c["in-ipv6-frag-packets"] == 0 {
		t.Errorf("B4 counters %v: want IPv6 fragments sent and received", b4c)
	}
}
