package aftr

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// Documentation addresses only: RFC 3849 (2001:db8::/32), RFC 5737
// (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24), RFC 7335 (192.0.0.0/29).
var (
	tAFTR   = netip.MustParseAddr("2001:db8::1")
	tB4A    = netip.MustParseAddr("2001:db8:a::1")
	tB4B    = netip.MustParseAddr("2001:db8:b::1")
	tB4C    = netip.MustParseAddr("2001:db8:c::1")
	tProv   = netip.MustParseAddr("2001:db8:ff::1")   // a provisioning system
	tPool   = netip.MustParsePrefix("192.0.2.8/29")   // the B4s' public addresses
	tSelf4  = netip.MustParseAddr("198.51.100.1")     // the AFTR's own IPv4 address
	tRemote = netip.MustParseAddr("203.0.113.10")     // an Internet host
	tOther4 = netip.MustParseAddr("198.51.100.77")    // an address not in the pool
	tB4In4  = netip.MustParseAddr("192.0.0.2")        // every B4's inner address
	tAFTR4  = netip.MustParseAddr("192.0.0.1")        // the AFTR's inner address
	tMapped = netip.MustParseAddr("::ffff:192.0.0.2") // PCP Client IP of a B4
)

// fakeLink records what the AFTR sends; it copies, since the AFTR may send
// a slice of a buffer it reuses.
type fakeLink struct {
	mu   sync.Mutex
	pkts [][]byte
}

func (l *fakeLink) Send(pkt []byte) {
	l.mu.Lock()
	l.pkts = append(l.pkts, bytes.Clone(pkt))
	l.mu.Unlock()
}

// take returns and forgets what was sent.
func (l *fakeLink) take() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.pkts
	l.pkts = nil
	return p
}

// discard is the benchmarks' link.
type discard struct{}

func (discard) Send([]byte) {}

// fakeClock is Config.Now under the test's control.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// rig is an AFTR with its fake links and clock.
type rig struct {
	t        testing.TB
	a        *AFTR
	cfg      Config
	access   *fakeLink
	internet *fakeLink
	clock    *fakeClock
}

func testConfig() Config {
	c := DefaultConfig()
	c.Addr = tAFTR
	c.Pools = []netip.Prefix{tPool}
	c.Provisioners = []netip.Prefix{netip.PrefixFrom(tProv, 128)}
	return c
}

// newRig builds an AFTR from testConfig changed by edit (may be nil).
func newRig(t testing.TB, edit func(*Config)) *rig {
	t.Helper()
	r := &rig{t: t, access: &fakeLink{}, internet: &fakeLink{}, clock: newClock()}
	cfg := testConfig()
	cfg.Now = r.clock.Now
	if edit != nil {
		edit(&cfg)
	}
	a, err := New(cfg, r.access, r.internet)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	r.a, r.cfg = a, cfg
	return r
}

// counter is one counter's packet count ("" suffix added).
func (r *rig) counter(name string) uint64 { return r.a.Counters()[name+"-packets"] }

// quiet fails if anything was sent on either link.
func (r *rig) quiet() {
	r.t.Helper()
	if p := r.access.take(); len(p) != 0 {
		r.t.Errorf("access link got %d packets, want none: % x", len(p), p[0])
	}
	if p := r.internet.take(); len(p) != 0 {
		r.t.Errorf("internet link got %d packets, want none: % x", len(p), p[0])
	}
}

// one returns the single packet sent on l (and checks the other is quiet).
func (r *rig) one(l, other *fakeLink, name string) []byte {
	r.t.Helper()
	if p := other.take(); len(p) != 0 {
		r.t.Fatalf("unexpected %d packets beside the %s link: % x", len(p), name, p[0])
	}
	p := l.take()
	if len(p) != 1 {
		r.t.Fatalf("%s link got %d packets, want 1", name, len(p))
	}
	return p[0]
}

func (r *rig) oneAccess() []byte   { r.t.Helper(); return r.one(r.access, r.internet, "access") }
func (r *rig) oneInternet() []byte { r.t.Helper(); return r.one(r.internet, r.access, "internet") }

// --- packet builders -------------------------------------------------------

func a4(a netip.Addr) [4]byte   { return a.As4() }
func a16(a netip.Addr) [16]byte { return a.As16() }

// setTOS sets the TOS of a built IPv4 packet (checksum kept right).
func setTOS(p []byte, tos uint8) []byte { packet.IPv4(p).SetTOS(tos); return p }

// udp4 is a whole IPv4/UDP packet with a valid checksum.
func udp4(src, dst netip.Addr, sport, dport uint16, ttl uint8, data []byte) []byte {
	return packet.AppendUDP4(nil, 0, a4(src), a4(dst), sport, dport, ttl, data)
}

// tcp4 is a whole IPv4/TCP packet (a bare SYN) with a valid checksum.
func tcp4(src, dst netip.Addr, sport, dport uint16, ttl uint8) []byte {
	b := make([]byte, packet.IPv4HeaderLen+20)
	packet.PutIPv4Header(b, 0, len(b), 0x1234, true, ttl, packet.ProtoTCP, a4(src), a4(dst))
	t := b[packet.IPv4HeaderLen:]
	binary.BigEndian.PutUint16(t[0:], sport)
	binary.BigEndian.PutUint16(t[2:], dport)
	binary.BigEndian.PutUint32(t[4:], 1000) // seq
	t[12] = 5 << 4                          // data offset
	t[13] = 0x02                            // SYN
	binary.BigEndian.PutUint16(t[14:], 65535)
	binary.BigEndian.PutUint16(t[16:], ^checksum.Checksum(t, pseudo4(src, dst, len(t), packet.ProtoTCP)))
	return b
}

// echo4 is an ICMP echo request (typ 8) or reply (typ 0).
func echo4(src, dst netip.Addr, typ uint8, id, seq uint16, ttl uint8) []byte {
	b := make([]byte, packet.IPv4HeaderLen+8+16)
	packet.PutIPv4Header(b, 0, len(b), 0x4321, false, ttl, packet.ProtoICMP, a4(src), a4(dst))
	m := b[packet.IPv4HeaderLen:]
	m[0] = typ
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], seq)
	copy(m[8:], "lw4o6 echo data!")
	binary.BigEndian.PutUint16(m[2:], ^checksum.Checksum(m, 0))
	return b
}

// icmpErr4 is an ICMPv4 error about invoking.
func icmpErr4(src, dst netip.Addr, typ, code uint8, invoking []byte) []byte {
	return packet.ICMPv4Error(typ, code, 0, a4(src), a4(dst), 64, invoking, packet.MaxICMPv4Error)
}

func pseudo4(src, dst netip.Addr, n int, proto uint8) uint16 {
	var ph [12]byte
	s, d := src.As4(), dst.As4()
	copy(ph[0:], s[:])
	copy(ph[4:], d[:])
	ph[9] = proto
	binary.BigEndian.PutUint16(ph[10:], uint16(n))
	return checksum.Checksum(ph[:], 0)
}

// encap puts ip4 into a softwire packet from b4 to dst, traffic class =
// the inner TOS as a B4 sends it (RFC 6333 §7.1).
func encap(b4, dst netip.Addr, ip4 []byte) []byte {
	return packet.Encapsulate(ip4, 0, a16(b4), a16(dst), 64)
}

// encapTC is encap with an explicit traffic class.
func encapTC(b4, dst netip.Addr, tc uint8, ip4 []byte) []byte {
	out := encap(b4, dst, ip4)
	packet.PutIPv6Header(out, tc, len(ip4), packet.ProtoIPIP, 64, a16(b4), a16(dst))
	return out
}

// --- PCP -------------------------------------------------------------------

func nonce(b byte) [pcp.NonceLen]byte {
	var n [pcp.NonceLen]byte
	for i := range n {
		n[i] = b + byte(i)
	}
	return n
}

// mapReq is the B4's request of PROTOCOL.md §8 item 1.
type mapReq struct {
	nonce        [pcp.NonceLen]byte
	lifetime     uint32
	protocol     uint8
	internalPort uint16
	suggestIP    netip.Addr // zero: ::ffff:0.0.0.0
	suggestPort  uint16
	portSet      *pcp.PortSet // nil: no PORT_SET
	thirdParty   netip.Addr
	opts         []pcp.Option
}

// b4Req is the §8 item 1 request: protocol 0, port 0, PORT_SET 65535.
func b4Req(n byte, lifetime uint32) mapReq {
	return mapReq{nonce: nonce(n), lifetime: lifetime, portSet: &pcp.PortSet{Size: 65535}}
}

func (q mapReq) marshal(t testing.TB) []byte {
	t.Helper()
	ip := q.suggestIP
	if !ip.IsValid() {
		ip = netip.IPv4Unspecified()
	}
	m := &pcp.Message{
		Opcode:   pcp.OpMap,
		Lifetime: q.lifetime,
		ClientIP: tMapped,
		Map: &pcp.MapData{
			Nonce:        q.nonce,
			Protocol:     q.protocol,
			InternalPort: q.internalPort,
			ExternalPort: q.suggestPort,
			ExternalIP:   ip,
		},
	}
	if q.thirdParty.IsValid() {
		m.Options = append(m.Options, pcp.ThirdPartyOption(q.thirdParty))
	}
	if q.portSet != nil {
		m.Options = append(m.Options, pcp.PortSetOption(*q.portSet))
	}
	m.Options = append(m.Options, q.opts...)
	b, err := pcp.Marshal(m)
	if err != nil {
		t.Fatalf("pcp.Marshal: %v", err)
	}
	return b
}

const tClientPort = 40123 // the B4's PCP client's source port

// pcpPacket is a PCP request inside a softwire packet from b4
// (192.0.0.2:40123 → 192.0.0.1:5351, PROTOCOL.md §8 item 3).
func pcpPacket(b4 netip.Addr, req []byte) []byte {
	return encap(b4, tAFTR, udp4(tB4In4, tAFTR4, tClientPort, pcp.ServerPort, 64, req))
}

// pcp sends a request from b4 and returns the parsed response, after
// checking the softwire and UDP around it (RFC 6887 §8.3: to the
// client's address and port from 5351; PROTOCOL.md §8 items 3 and 8).
func (r *rig) pcp(b4 netip.Addr, q mapReq) *pcp.Message {
	r.t.Helper()
	r.a.FromAccess(pcpPacket(b4, q.marshal(r.t)))
	return r.pcpReply(b4, r.oneAccess())
}

func (r *rig) pcpReply(b4 netip.Addr, b []byte) *pcp.Message {
	r.t.Helper()
	var outer packet.IPv6
	ip4, err := packet.Decapsulate(b, &outer)
	if err != nil {
		r.t.Fatalf("reply is not a softwire packet: %v", err)
	}
	if outer.SrcAddr() != tAFTR || outer.DstAddr() != b4 || outer.HopLimit != r.cfg.HopLimit {
		r.t.Fatalf("reply outer %v → %v hop limit %d, want %v → %v hop limit %d",
			outer.SrcAddr(), outer.DstAddr(), outer.HopLimit, tAFTR, b4, r.cfg.HopLimit)
	}
	if len(ip4) != len(outer.Payload) {
		r.t.Fatalf("inner IPv4 is %d octets of a %d-octet payload", len(ip4), len(outer.Payload))
	}
	var u packet.UDP
	if err := packet.ParseUDP4(ip4, &u); err != nil {
		r.t.Fatalf("reply UDP: %v", err)
	}
	if binary.BigEndian.Uint16(ip4.Payload()[6:]) == 0 {
		r.t.Fatalf("reply UDP has no checksum")
	}
	if ip4.SrcAddr() != tAFTR4 || ip4.DstAddr() != tB4In4 || u.SrcPort != pcp.ServerPort || u.DstPort != tClientPort {
		r.t.Fatalf("reply %v:%d → %v:%d, want %v:%d → %v:%d", ip4.SrcAddr(), u.SrcPort, ip4.DstAddr(), u.DstPort,
			tAFTR4, pcp.ServerPort, tB4In4, tClientPort)
	}
	m, err := pcp.Parse(u.Data)
	if err != nil {
		r.t.Fatalf("pcp.Parse(reply): %v", err)
	}
	if !m.Response || m.Opcode != pcp.OpMap {
		r.t.Fatalf("reply is not a MAP response: %+v", m)
	}
	return m
}

// granted checks a SUCCESS with PORT_SET and returns the set's address,
// first port and size.
func granted(t testing.TB, m *pcp.Message) (netip.Addr, uint16, uint16) {
	t.Helper()
	if m.Result != pcp.Success {
		t.Fatalf("result %v lifetime %d, want SUCCESS", m.Result, m.Lifetime)
	}
	ps, ok, err := m.PortSet()
	if !ok || err != nil {
		t.Fatalf("SUCCESS without a valid PORT_SET (%v, %v)", ok, err)
	}
	if ps.FirstInternalPort != m.Map.ExternalPort {
		// PROTOCOL.md §8 item 1: the lwAFTR does not translate.
		t.Fatalf("PORT_SET first internal port %d ≠ assigned external port %d", ps.FirstInternalPort, m.Map.ExternalPort)
	}
	return m.Map.ExternalIP, m.Map.ExternalPort, ps.Size
}

// bind provisions b4 with the §8 item 1 request and returns its set.
func (r *rig) bind(b4 netip.Addr, n byte) (netip.Addr, uint16, uint16) {
	r.t.Helper()
	return granted(r.t, r.pcp(b4, b4Req(n, 3600)))
}

// binding returns b4's binding from a.Bindings().
func (r *rig) binding(b4 netip.Addr) (bindingView, bool) {
	for _, b := range r.a.Bindings() {
		if b.B4 == b4 {
			rg, ok := b.PSID.Contiguous()
			return bindingView{ip: b.IPv4, first: rg.First, size: rg.Size, contiguous: ok, br: b.BR, expires: b.Expires}, true
		}
	}
	return bindingView{}, false
}

type bindingView struct {
	ip         netip.Addr
	first      uint16
	size       uint32
	contiguous bool
	br         netip.Addr
	expires    time.Time
}

// --- checks on what the AFTR sends -----------------------------------------

// softwireTo checks a softwire packet from the AFTR to b4 and returns its
// inner IPv4 packet (RFC 7596 §6.2, RFC 2473 §6.3, RFC 6333 §7.1).
func (r *rig) softwireTo(b []byte, b4 netip.Addr) packet.IPv4 {
	r.t.Helper()
	var outer packet.IPv6
	ip4, err := packet.Decapsulate(b, &outer)
	if err != nil {
		r.t.Fatalf("not a softwire packet: %v", err)
	}
	if outer.SrcAddr() != tAFTR || outer.DstAddr() != b4 {
		r.t.Fatalf("softwire %v → %v, want %v → %v", outer.SrcAddr(), outer.DstAddr(), tAFTR, b4)
	}
	if outer.HopLimit != r.cfg.HopLimit {
		r.t.Errorf("hop limit %d, want Config.HopLimit %d", outer.HopLimit, r.cfg.HopLimit)
	}
	if outer.TrafficClass != ip4.TOS() {
		r.t.Errorf("traffic class %#x, want the inner TOS %#x", outer.TrafficClass, ip4.TOS())
	}
	if fl := binary.BigEndian.Uint32(b) & 0xfffff; fl != 0 {
		r.t.Errorf("flow label %#x, want 0 (RFC 2473 §6.5)", fl)
	}
	if len(ip4) != len(outer.Payload) {
		r.t.Errorf("inner IPv4 is %d octets of a %d-octet payload", len(ip4), len(outer.Payload))
	}
	return ip4
}

// icmp6To checks an ICMPv6 error from the AFTR to dst and returns it.
func (r *rig) icmp6To(b []byte, dst netip.Addr) packet.ICMPv6 {
	r.t.Helper()
	var outer packet.IPv6
	if err := packet.ParseIPv6(b, &outer); err != nil {
		r.t.Fatalf("ICMPv6: %v", err)
	}
	if outer.SrcAddr() != tAFTR || outer.DstAddr() != dst || outer.NextHeader != packet.ProtoICMPv6 {
		r.t.Fatalf("ICMPv6 %v → %v next header %d, want %v → %v, 58", outer.SrcAddr(), outer.DstAddr(), outer.NextHeader, tAFTR, dst)
	}
	var m packet.ICMPv6
	if err := packet.ParseICMPv6(&outer, &m); err != nil {
		r.t.Fatalf("ICMPv6 checksum: %v", err)
	}
	return m
}

// icmp4 checks an ICMPv4 error (valid IP header and ICMP checksum) and
// returns its type, code and embedded packet.
func icmp4(t testing.TB, ip4 packet.IPv4) (typ, code uint8, body []byte) {
	t.Helper()
	if ip4.Protocol() != packet.ProtoICMP {
		t.Fatalf("protocol %d, want ICMP", ip4.Protocol())
	}
	m := ip4.Payload()
	if len(m) < 8 || checksum.Checksum(m, 0) != 0xffff {
		t.Fatalf("bad ICMPv4 message (%d octets)", len(m))
	}
	return m[0], m[1], m[8:]
}

// mustIPv4 parses an IPv4 packet that must be whole and valid.
func mustIPv4(t testing.TB, b []byte) packet.IPv4 {
	t.Helper()
	ip4, err := packet.ParseIPv4(b)
	if err != nil {
		t.Fatalf("ParseIPv4: %v", err)
	}
	if len(ip4) != len(b) {
		t.Fatalf("IPv4 total length %d of %d octets", len(ip4), len(b))
	}
	return ip4
}

// sameExceptTTLAndTOS compares a forwarded packet with the one sent: only
// TTL (one less), TOS and the header checksum may differ.
func sameExceptTTLAndTOS(t testing.TB, got, sent []byte, tos uint8) {
	t.Helper()
	g := mustIPv4(t, got)
	if len(got) != len(sent) {
		t.Fatalf("forwarded %d octets, sent %d", len(got), len(sent))
	}
	if g.TTL() != sent[8]-1 {
		t.Errorf("TTL %d, want %d - 1", g.TTL(), sent[8])
	}
	if g.TOS() != tos {
		t.Errorf("TOS %#x, want %#x", g.TOS(), tos)
	}
	w := bytes.Clone(sent)
	w[1], w[8] = tos, sent[8]-1
	packet.SetIPv4HeaderChecksum(w)
	if !bytes.Equal(got, w) {
		t.Errorf("forwarded packet\n% x\nwant\n% x", got, w)
	}
}
