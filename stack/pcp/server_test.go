package pcp

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"
)

type serverCase struct {
	name      string
	req       []byte
	src       netip.Addr // zero: b4Addr
	tp        bool       // THIRD_PARTY allowed
	peer      bool       // handler implements PeerHandler
	noHandler bool
	resp      Response // handler's answer; zero Response is SUCCESS, lifetime 0

	drop     bool
	code     ResultCode
	lifetime uint32 // expected Lifetime; for errors 0 means ErrorLifetime(code)
	unparsed bool   // error response keeps the Client IP tail in Reserved (§7.2)
	check    func(t *testing.T, resp *Message, h *fakeHandler)
}

var okResp = Response{Lifetime: 7200, ExternalIP: extAddr, ExternalPort: 4096}

func runServerCase(t *testing.T, tc serverCase) {
	clk := newFakeClock()
	h := &fakePeerHandler{}
	h.resp = tc.resp
	cfg := ServerConfig{Now: clk.Now}
	switch {
	case tc.noHandler:
	case tc.peer:
		cfg.Handler = h
	default:
		cfg.Handler = &h.fakeHandler
	}
	if tc.tp {
		cfg.ThirdPartyAllowed = func(c any) bool { return c == "provisioner" }
	}
	s := NewServer(cfg)
	clk.Advance(17 * time.Second)
	src := tc.src
	if !src.IsValid() {
		src = b4Addr
	}
	out := s.Handle(tc.req, src, "provisioner")
	if tc.drop {
		if out != nil {
			t.Fatalf("want drop, got %x", out)
		}
		return
	}
	if out == nil {
		t.Fatal("dropped")
	}
	if len(out) > MaxMessageLen || len(out)%4 != 0 || len(out) < HeaderLen {
		t.Fatalf("response length %d", len(out))
	}
	if out[0] != Version || out[1]&0x80 == 0 || ResultCode(out[3]) != tc.code {
		t.Fatalf("response header %x: want result %v, got %v", out[:4], tc.code, ResultCode(out[3]))
	}
	if got := binary.BigEndian.Uint32(out[8:]); got != 17 {
		t.Errorf("Epoch = %d, want 17", got)
	}
	wantLT := tc.lifetime
	if tc.code != Success && wantLT == 0 {
		wantLT = ErrorLifetime(tc.code)
	}
	if got := binary.BigEndian.Uint32(out[4:]); got != wantLT {
		t.Errorf("Lifetime = %d, want %d", got, wantLT)
	}
	if tc.code != Success {
		// §8.2: the whole request copied (≤1100, padded), opcode kept.
		n := min(len(tc.req), MaxMessageLen)
		if want := max((n+3)&^3, HeaderLen); len(out) != want {
			t.Errorf("error response is %d octets, want %d", len(out), want)
		}
		if len(tc.req) > 1 && out[1] != tc.req[1]|0x80 {
			t.Errorf("opcode octet %#x, request %#x", out[1], tc.req[1])
		}
		if n > HeaderLen && !bytes.Equal(out[HeaderLen:n], tc.req[HeaderLen:n]) {
			t.Errorf("payload not copied")
		}
		reserved := out[12:HeaderLen]
		if tc.unparsed {
			want := make([]byte, 12)
			if len(tc.req) > 12 {
				copy(want, tc.req[12:min(len(tc.req), HeaderLen)])
			}
			if !bytes.Equal(reserved, want) {
				t.Errorf("§7.2: Reserved = %x, want the Client IP tail %x", reserved, want)
			}
		} else if !bytes.Equal(reserved, make([]byte, 12)) {
			t.Errorf("§7.2: Reserved = %x, want 0", reserved)
		}
	}
	m, err := Parse(out)
	if err != nil {
		t.Fatalf("response does not parse: %v", err)
	}
	if tc.check != nil {
		tc.check(t, m, &h.fakeHandler)
	}
}

func TestServerChecks(t *testing.T) {
	mapB := func(m *Message) []byte { return mustMarshal(t, m) }
	plain := mapB(mapReq(7200, 6, 80))
	rbit := append([]byte(nil), plain...)
	rbit[1] |= 0x80
	v1 := append([]byte{1}, plain[1:]...)
	v3 := append([]byte{3}, plain[1:]...)
	unaligned := append(append([]byte(nil), plain...), 0xde, 0xad)
	oversize := append(append([]byte(nil), plain...), make([]byte, 1200)...)
	unknownOp := append([]byte{2, 0x05}, plain[2:]...)
	framing := append(append([]byte(nil), plain...), opt(200, 40)...)
	dupTP := append(append([]byte(nil), plain...), append(opt(1, 16, make([]byte, 16)...), opt(1, 16, make([]byte, 16)...)...)...)
	withPF := mapReq(7200, 6, 80, PreferFailureOption())
	withPF.Map.ExternalPort = 8080
	withPF.Map.ExternalIP = extAddr
	pfDelete := mapReq(0, 6, 80, PreferFailureOption())
	pfDelete.Map.ExternalPort = 8080
	pfPortSet := mapReq(7200, 6, 80, PortSetOption(PortSet{Size: 10, FirstInternalPort: 80}), PreferFailureOption())
	pfPortSet.Map.ExternalPort = 80
	del := mapReq(0, 6, 80)
	del.Map.ExternalPort, del.Map.ExternalIP = 9999, peerAddr
	b4Set := mapReq(7200, 0, 0, PortSetOption(PortSet{Size: 65535}))
	rfc7753 := mapReq(7200, 0, 1, PortSetOption(PortSet{Size: 65535, FirstInternalPort: 1}))
	v4filter := FilterOption(FilterFor(netip.MustParsePrefix("203.0.113.0/24"), 0))
	setResp := Response{Lifetime: 7200, ExternalIP: extAddr, ExternalPort: 4096, PortSet: &PortSet{Size: 4096, FirstInternalPort: 4096}}
	longDesc := Response{Lifetime: 60, ExternalIP: extAddr, ExternalPort: 1, Options: []Option{DescriptionOption(strings.Repeat("d", 1100))}}

	hasOpt := func(code OptionCode, want bool) func(*testing.T, *Message, *fakeHandler) {
		return func(t *testing.T, m *Message, _ *fakeHandler) {
			if _, ok := m.Option(code); ok != want {
				t.Errorf("option %v in response: %v, want %v", code, ok, want)
			}
		}
	}

	cases := []serverCase{
		// §8.2 in order.
		{name: "RFC6887 §8.2: 1 octet -> dropped", req: []byte{2}, drop: true},
		{name: "RFC6887 §8.2: R bit set -> dropped", req: rbit, drop: true},
		{name: "RFC6887 §8.2: R bit set, wrong version -> dropped", req: []byte{0, 0x80}, drop: true},
		{name: "RFC6887 §8.2, §9: version 1 -> UNSUPP_VERSION", req: v1, code: UnsuppVersion, unparsed: true},
		{name: "RFC6887 §9: version 3 -> UNSUPP_VERSION naming version 2", req: v3, code: UnsuppVersion, unparsed: true},
		{name: "RFC6887 App. A: NAT-PMP address request -> NAT-PMP compatible UNSUPP_VERSION", req: []byte{0, 0},
			code: UnsuppVersion, unparsed: true, check: func(t *testing.T, m *Message, _ *fakeHandler) {
				if m.Opcode != OpAnnounce {
					t.Errorf("opcode %v", m.Opcode)
				}
			}},
		{name: "RFC6887 App. A: NAT-PMP UDP mapping request -> UNSUPP_VERSION, op 128+1",
			req: []byte{0, 1, 0, 0, 0x13, 0x88, 0, 0, 0, 0, 0x1c, 0x20}, code: UnsuppVersion, unparsed: true},
		{name: "RFC6887 §8.2: version 2, 20 octets -> dropped", req: plain[:20], drop: true},
		{name: "RFC6887 §8.2: over 1100 octets -> MALFORMED_REQUEST cut to 1100", req: oversize, code: MalformedRequest, unparsed: true},
		{name: "RFC6887 §8.2: not a multiple of 4 -> MALFORMED_REQUEST", req: unaligned, code: MalformedRequest, unparsed: true},
		{name: "RFC6887 §8.2: MAP too short for the opcode -> MALFORMED_REQUEST", req: plain[:48], code: MalformedRequest, unparsed: true},
		{name: "RFC6887 §8.2: PEER too short for the opcode -> MALFORMED_REQUEST", req: mapB(peerReq(60, 6, 1, 2))[:60], peer: true, code: MalformedRequest, unparsed: true},
		{name: "RFC6887 §8.2: source differs from Client IP -> ADDRESS_MISMATCH", req: plain, src: lanHost, code: AddressMismatch},
		{name: "RFC6887 §8.2: ADDRESS_MISMATCH comes before UNSUPP_OPCODE", req: unknownOp, src: lanHost, code: AddressMismatch, unparsed: true},
		{name: "RFC6887 §8.2: ADDRESS_MISMATCH comes before option errors", req: framing, src: lanHost, code: AddressMismatch, unparsed: true},
		{name: "RFC6887 §8.2: IPv4-mapped source matches", req: plain, src: netip.AddrFrom16(b4Addr.As16()), resp: okResp, code: Success, lifetime: 7200},
		{name: "RFC6887 §8.2: IPv6 client", req: func() []byte { m := mapReq(60, 6, 80); m.ClientIP = v6Client; return mapB(m) }(),
			src: v6Client, resp: okResp, code: Success, lifetime: 7200},
		{name: "RFC6887 §8.2: unknown opcode -> UNSUPP_OPCODE, payload copied", req: unknownOp, code: UnsuppOpcode, unparsed: true},
		{name: "RFC6887 §12: PEER without a PeerHandler -> UNSUPP_OPCODE", req: mapB(peerReq(60, 6, 1, 2)), code: UnsuppOpcode, unparsed: true},
		{name: "RFC6887 §11: MAP without a Handler -> UNSUPP_OPCODE", req: plain, noHandler: true, code: UnsuppOpcode, unparsed: true},

		// Options (§7.3, §13; RFC 7753 §4; RFC 7220 §3).
		{name: "RFC6887 §7.3: option runs past the message -> MALFORMED_OPTION", req: framing, code: MalformedOption, unparsed: true},
		{name: "RFC6887 §7.3: THIRD_PARTY twice -> MALFORMED_OPTION", req: dupTP, tp: true, code: MalformedOption, unparsed: true},
		{name: "RFC6887 §7.3: unknown mandatory option -> UNSUPP_OPTION", req: mapB(mapReq(60, 6, 80, Option{Code: 42})), code: UnsuppOption},
		{name: "RFC6887 §7.3: unknown optional option ignored, not echoed", req: mapB(mapReq(60, 6, 80, Option{Code: 222, Data: []byte{1}})),
			resp: okResp, code: Success, lifetime: 7200, check: hasOpt(222, false)},
		{name: "RFC6887 §13.1: THIRD_PARTY not allowed -> UNSUPP_OPTION", req: mapB(mapReq(60, 6, 80, ThirdPartyOption(lanHost))), code: UnsuppOption},
		{name: "RFC6887 §13.1: THIRD_PARTY equal to source -> MALFORMED_REQUEST", req: mapB(mapReq(60, 6, 80, ThirdPartyOption(b4Addr))), tp: true, code: MalformedRequest},
		{name: "RFC6887 §13.1: THIRD_PARTY allowed -> processed and echoed", req: mapB(mapReq(60, 6, 80, ThirdPartyOption(lanHost))), tp: true,
			resp: okResp, code: Success, lifetime: 7200, check: func(t *testing.T, m *Message, h *fakeHandler) {
				hasOpt(OptThirdParty, true)(t, m, h)
				if r := h.last(); r.InternalIP != lanHost || r.ThirdParty != lanHost || r.Src != b4Addr || r.Client != "provisioner" {
					t.Errorf("request %+v", r)
				}
			}},
		{name: "RFC6887 §13: THIRD_PARTY in ANNOUNCE -> UNSUPP_OPTION", req: mapB(&Message{Opcode: OpAnnounce, ClientIP: b4Addr, Options: []Option{ThirdPartyOption(lanHost)}}), tp: true, code: UnsuppOption},
		{name: "RFC6887 §11.3: PREFER_FAILURE with lifetime 0 -> MALFORMED_OPTION", req: mapB(pfDelete), code: MalformedOption},
		{name: "RFC6887 §13.2: PREFER_FAILURE with suggested port 0 -> MALFORMED_OPTION", req: mapB(mapReq(60, 6, 80, PreferFailureOption())), code: MalformedOption},
		{name: "RFC6887 §12.1: PREFER_FAILURE in PEER -> MALFORMED_REQUEST", req: mapB(peerReq(60, 6, 1, 2, PreferFailureOption())), peer: true, code: MalformedRequest},
		{name: "RFC6887 §13.2: PREFER_FAILURE processed and echoed", req: mapB(withPF), resp: Response{Lifetime: 60, ExternalIP: extAddr, ExternalPort: 8080},
			code: Success, lifetime: 60, check: func(t *testing.T, m *Message, h *fakeHandler) {
				hasOpt(OptPreferFailure, true)(t, m, h)
				if !h.last().PreferFailure {
					t.Error("PreferFailure not passed")
				}
			}},
		{name: "RFC6887 §13.2: handler cannot honour PREFER_FAILURE -> CANNOT_PROVIDE_EXTERNAL", req: mapB(withPF),
			resp: Response{Result: CannotProvideExternal}, code: CannotProvideExternal},
		{name: "RFC6887 §13.3: FILTER with lifetime 0 -> MALFORMED_OPTION", req: mapB(mapReq(0, 6, 80, v4filter)), code: MalformedOption},
		{name: "RFC6887 §13.3: IPv4 FILTER prefix 95 -> MALFORMED_OPTION", req: mapB(mapReq(60, 6, 80, FilterOption(Filter{PrefixLen: 95, RemoteIP: peerAddr}))), code: MalformedOption},
		{name: "RFC6887 §13.3: IPv6 FILTER prefix 129 -> MALFORMED_OPTION", req: mapB(mapReq(60, 6, 80, FilterOption(Filter{PrefixLen: 129, RemoteIP: v6Client}))), code: MalformedOption},
		{name: "RFC6887 §7.3: FILTER in PEER -> UNSUPP_OPTION", req: mapB(peerReq(60, 6, 1, 2, v4filter)), peer: true, code: UnsuppOption},
		{name: "RFC6887 §13.3: FILTERs passed in order and echoed", req: mapB(mapReq(60, 6, 80, FilterOption(Filter{}), v4filter)),
			resp: okResp, code: Success, lifetime: 7200, check: func(t *testing.T, m *Message, h *fakeHandler) {
				if fs, _ := m.Filters(); len(fs) != 2 || len(h.last().Filters) != 2 || h.last().Filters[1].PrefixLen != 120 {
					t.Errorf("filters %+v / %+v", fs, h.last().Filters)
				}
			}},
		{name: "RFC6887 §13.3: too many filters -> EXCESSIVE_REMOTE_PEERS", req: mapB(mapReq(60, 6, 80, v4filter, v4filter)),
			resp: Response{Result: ExcessiveRemotePeers}, code: ExcessiveRemotePeers},
		{name: "RFC7753 §4.2: PORT_SET size 0 -> MALFORMED_OPTION", req: mapB(mapReq(60, 0, 0, PortSetOption(PortSet{}))), code: MalformedOption},
		{name: "RFC7753 §4: First Internal Port differs from Internal Port -> MALFORMED_OPTION", req: mapB(mapReq(60, 17, 5000, PortSetOption(PortSet{Size: 10, FirstInternalPort: 5001}))), code: MalformedOption},
		{name: "PROTOCOL.md §2.3: PORT_SET past port 65535 -> MALFORMED_OPTION", req: mapB(mapReq(60, 17, 65530, PortSetOption(PortSet{Size: 7, FirstInternalPort: 65530}))), code: MalformedOption},
		{name: "RFC7753 §4.2: PORT_SET ending at 65535 is fine", req: mapB(mapReq(60, 17, 65530, PortSetOption(PortSet{Size: 6, FirstInternalPort: 65530}))), resp: okResp, code: Success, lifetime: 7200},
		{name: "RFC7753 §4.2: PORT_SET with PREFER_FAILURE -> MALFORMED_OPTION", req: mapB(pfPortSet), code: MalformedOption},
		{name: "RFC7753 §4.2: PORT_SET twice -> MALFORMED_OPTION", req: append(mapB(mapReq(60, 17, 80)), append(opt(130, 5, 0, 2, 0, 80, 0), opt(130, 5, 0, 2, 0, 80, 0)...)...), code: MalformedOption, unparsed: true},
		{name: "RFC7753 §4.2: size 1 is a plain MAP, option ignored", req: mapB(mapReq(60, 17, 80, PortSetOption(PortSet{Size: 1, FirstInternalPort: 80}))),
			resp: Response{Lifetime: 60, ExternalIP: extAddr, ExternalPort: 80, PortSet: &PortSet{Size: 1, FirstInternalPort: 80}}, code: Success, lifetime: 60,
			check: func(t *testing.T, m *Message, h *fakeHandler) {
				hasOpt(OptPortSet, false)(t, m, h)
				if h.last().PortSet != nil {
					t.Error("PortSet passed to handler")
				}
			}},
		{name: "RFC7753 §4.2: size 1 does not excuse protocol 0 with a port -> MALFORMED_REQUEST", req: mapB(mapReq(60, 0, 1, PortSetOption(PortSet{Size: 1, FirstInternalPort: 1}))), code: MalformedRequest},
		{name: "RFC7753 §4.2: a single port mapped -> no PORT_SET in the response", req: mapB(mapReq(60, 17, 80, PortSetOption(PortSet{Size: 8, FirstInternalPort: 80}))),
			resp: okResp, code: Success, lifetime: 7200, check: hasOpt(OptPortSet, false)},
		{name: "RFC7753 §4: PORT_SET in PEER ignored", req: mapB(peerReq(60, 6, 1, 2, PortSetOption(PortSet{}))), peer: true, resp: okResp, code: Success, lifetime: 7200,
			check: func(t *testing.T, m *Message, h *fakeHandler) {
				hasOpt(OptPortSet, false)(t, m, h)
				if m.Peer == nil || m.Peer.RemotePort != 2 || m.Peer.RemoteIP != peerAddr {
					t.Errorf("§12.3: remote peer not copied: %+v", m.Peer)
				}
			}},
		{name: "RFC7220 §3: invalid DESCRIPTION ignored", req: mapB(mapReq(60, 6, 80, DescriptionOption("\xff\xfe"))), resp: okResp, code: Success, lifetime: 7200,
			check: func(t *testing.T, m *Message, h *fakeHandler) {
				hasOpt(OptDescription, false)(t, m, h)
				if h.last().Description != nil {
					t.Error("invalid description passed")
				}
			}},
		{name: "RFC7220 §3: DESCRIPTION passed, echoed as the handler stored it", req: mapB(mapReq(60, 6, 80, DescriptionOption("web server"))),
			resp: Response{Lifetime: 60, ExternalIP: extAddr, ExternalPort: 80, Options: []Option{DescriptionOption("web")}}, code: Success, lifetime: 60,
			check: func(t *testing.T, m *Message, h *fakeHandler) {
				if d, _, _ := m.Description(); d != "web" || *h.last().Description != "web server" {
					t.Errorf("description %q / %q", d, *h.last().Description)
				}
			}},

		// MAP and PEER fields (§11.3, §12.1, §15.1).
		{name: "RFC6887 §11.3: protocol 0 with internal port 80 -> MALFORMED_REQUEST", req: mapB(mapReq(60, 0, 80)), code: MalformedRequest},
		{name: "RFC6887 §15.1: delete with protocol 0 and port 80 -> MALFORMED_REQUEST", req: mapB(mapReq(0, 0, 80)), code: MalformedRequest},
		{name: "PROTOCOL.md §8 item 1: B4 port-set request", req: mapB(b4Set), resp: setResp, code: Success, lifetime: 7200,
			check: func(t *testing.T, m *Message, h *fakeHandler) {
				ps, ok, _ := m.PortSet()
				if !ok || ps.Size != 4096 || m.Map.ExternalPort != 4096 || m.Map.ExternalIP != extAddr || *h.last().PortSet != (PortSet{Size: 65535}) {
					t.Errorf("response %+v %+v", m.Map, ps)
				}
				if m.Map.Nonce != testNonce || m.Map.Protocol != 0 || m.Map.InternalPort != 0 {
					t.Errorf("§11.3: fields not copied: %+v", m.Map)
				}
			}},
		{name: "RFC7753 §5.2: protocol 0, internal port 1 with PORT_SET accepted", req: mapB(rfc7753), resp: setResp, code: Success, lifetime: 7200,
			check: func(t *testing.T, m *Message, _ *fakeHandler) {
				if m.Map.InternalPort != 1 {
					t.Errorf("internal port %d", m.Map.InternalPort)
				}
			}},
		{name: "RFC6887 §15.1: delete with suggestions is processed, suggestions copied", req: mapB(del), resp: Response{ExternalIP: extAddr, ExternalPort: 1},
			code: Success, lifetime: 0, check: func(t *testing.T, m *Message, _ *fakeHandler) {
				if m.Map.ExternalPort != 9999 || m.Map.ExternalIP != peerAddr {
					t.Errorf("suggestions not copied: %+v", m.Map)
				}
			}},
		{name: "RFC6887 §12.1: PEER with remote port 0 -> MALFORMED_REQUEST", req: mapB(peerReq(60, 6, 1, 0)), peer: true, code: MalformedRequest},
		{name: "RFC6887 §12.1: PEER with protocol 0 -> MALFORMED_REQUEST", req: mapB(peerReq(60, 0, 1, 1)), peer: true, code: MalformedRequest},

		// Handler results (§7.4): each copies the request, lifetime default or the handler's.
		{name: "RFC6887 §11.3: nonce mismatch -> NOT_AUTHORIZED with the mapping's remaining life", req: plain, resp: Response{Result: NotAuthorized, Lifetime: 500}, code: NotAuthorized, lifetime: 500},
		{name: "RFC6887 §7.4: NETWORK_FAILURE, short lifetime", req: plain, resp: Response{Result: NetworkFailure}, code: NetworkFailure},
		{name: "RFC6887 §7.4: NO_RESOURCES, short lifetime", req: plain, resp: Response{Result: NoResources}, code: NoResources},
		{name: "RFC6887 §7.4: USER_EX_QUOTA, short lifetime", req: plain, resp: Response{Result: UserExQuota}, code: UserExQuota},
		{name: "RFC6887 §11.3: UNSUPP_PROTOCOL, long lifetime", req: mapB(mapReq(60, 132, 0)), resp: Response{Result: UnsuppProtocol}, code: UnsuppProtocol},
		{name: "RFC6887 §7.3: response over 1100 octets -> MALFORMED_REQUEST", req: plain, resp: longDesc, code: MalformedRequest},

		// ANNOUNCE (§14.1).
		{name: "RFC6887 §14.1.2: ANNOUNCE -> SUCCESS, lifetime 0", req: mapB(&Message{Opcode: OpAnnounce, Lifetime: 99, ClientIP: b4Addr}), noHandler: true, code: Success, lifetime: 0,
			check: func(t *testing.T, m *Message, _ *fakeHandler) {
				if m.Opcode != OpAnnounce || len(m.Options) != 0 {
					t.Errorf("%+v", m)
				}
			}},
		{name: "RFC6887 §14.1.1: ANNOUNCE tolerates options", req: mapB(&Message{Opcode: OpAnnounce, ClientIP: b4Addr, Options: []Option{{Code: OptPrefix64, Data: make([]byte, 14)}}}), code: Success},
		{name: "RFC6887 §14.1.1: ANNOUNCE with a mismatched address -> ADDRESS_MISMATCH", req: mapB(&Message{Opcode: OpAnnounce, ClientIP: lanHost}), code: AddressMismatch},
		{name: "RFC6887 §7.3: ANNOUNCE with unknown mandatory option -> UNSUPP_OPTION", req: mapB(&Message{Opcode: OpAnnounce, ClientIP: b4Addr, Options: []Option{{Code: 50}}}), code: UnsuppOption},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runServerCase(t, tc) })
	}
}

func TestServerNATPMPReplyBytes(t *testing.T) {
	s := NewServer(ServerConfig{})
	out := s.Handle([]byte{0, 1, 0, 0, 0x13, 0x88, 0, 0, 0, 0, 0x1c, 0x20}, b4Addr, nil)
	// RFC 6886 reads octet 1 as 128+op and octets 2-3 as the result, 1 =
	// Unsupported Version; our version octet says PCP 2 (RFC 6887 §9).
	if len(out) != 24 || !bytes.Equal(out[:4], []byte{2, 0x81, 0, 1}) {
		t.Fatalf("RFC6887 App. A: %x", out)
	}
}

func TestServerEpoch(t *testing.T) {
	clk := newFakeClock()
	s := NewServer(ServerConfig{Now: clk.Now, Handler: &fakeHandler{resp: okResp}})
	if s.Epoch() != 0 {
		t.Fatalf("RFC6887 §8.5: Epoch at start = %d", s.Epoch())
	}
	clk.Advance(1500 * time.Millisecond)
	if s.Epoch() != 1 {
		t.Fatalf("after 1.5 s Epoch = %d", s.Epoch())
	}
	clk.Advance(3600 * time.Second)
	if s.Epoch() != 3601 {
		t.Fatalf("after 3601.5 s Epoch = %d", s.Epoch())
	}
	req := mustMarshal(t, &Message{Opcode: OpAnnounce, ClientIP: b4Addr})
	m, _ := Parse(s.Handle(req, b4Addr, nil))
	if m.Epoch != 3601 {
		t.Fatalf("response Epoch %d", m.Epoch)
	}
	s.ResetEpoch()
	if s.Epoch() != 0 {
		t.Fatalf("RFC6887 §8.5: after reset Epoch = %d", s.Epoch())
	}
	clk.Advance(2 * time.Second)
	a, err := Parse(s.Announce())
	if err != nil || !a.Response || a.Opcode != OpAnnounce || a.Result != Success || a.Lifetime != 0 || a.Epoch != 2 {
		t.Fatalf("RFC6887 §14.1.3: Announce = %+v, %v", a, err)
	}
}

// The error response of a request that parsed has a zero Reserved field,
// and that of one that did not keeps the Client IP tail (§7.2): checked
// in runServerCase. Here: responses are idempotent (§8).
func TestServerIdempotent(t *testing.T) {
	clk := newFakeClock()
	s := NewServer(ServerConfig{Now: clk.Now, Handler: &fakeHandler{resp: okResp}})
	req := mustMarshal(t, mapReq(7200, 0, 0, PortSetOption(PortSet{Size: 65535})))
	a, b := s.Handle(req, b4Addr, nil), s.Handle(req, b4Addr, nil)
	if !bytes.Equal(a, b) {
		t.Fatalf("RFC6887 §8: retransmission answered differently\n%x\n%x", a, b)
	}
}

// AppendHandle appends to what dst holds and answers as Handle does, for
// a success and for an error; the pooled request state of one call does
// not show in the next (a request with options, then one without).
func TestServerAppendHandle(t *testing.T) {
	s := NewServer(ServerConfig{Handler: &fakeHandler{resp: okResp}})
	withSet := mustMarshal(t, mapReq(7200, 0, 0, PortSetOption(PortSet{Size: 65535}), DescriptionOption("web")))
	plain := mustMarshal(t, mapReq(7200, 6, 80))
	bad := mustMarshal(t, mapReq(7200, 0, 80)) // protocol 0, port 80: MALFORMED_REQUEST
	prefix := []byte("head")
	for _, req := range [][]byte{withSet, plain, bad, withSet, plain} {
		want := s.Handle(req, b4Addr, nil)
		got := s.AppendHandle(append(make([]byte, 0, 8), prefix...), req, b4Addr, nil)
		if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], want) {
			t.Fatalf("AppendHandle = %x\nwant head + %x", got, want)
		}
	}
	m, err := Parse(s.Handle(plain, b4Addr, nil))
	if err != nil || len(m.Options) != 0 || m.Result != Success {
		t.Errorf("plain MAP after one with options: %+v, %v (options of an earlier request?)", m, err)
	}
	if s.AppendHandle([]byte("head"), []byte{2, 0x81, 0, 0}, b4Addr, nil) != nil {
		t.Error("a response was answered")
	}
}
