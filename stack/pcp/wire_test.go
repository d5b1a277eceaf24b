package pcp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The B4's port-set request of PROTOCOL.md §8 item 1, built by hand from
// RFC 6887 §7.1, §11.1 and RFC 7753 §4.
const b4RequestHex = `
02 01 0000  00001c20  00000000 00000000 0000ffff c0000002
0102030405060708090a0b0c  00 000000  0000 0000  00000000 00000000 0000ffff 00000000
82 00 0005  ffff 0000  00 000000`

// The AFTR's answer: 4096 ports from 4096 on 198.51.100.7, Epoch 42
// (RFC 6887 §7.2, §11.1; RFC 7753 §4.2).
const aftrResponseHex = `
02 81 00 00  00001c20  0000002a  00000000 00000000 00000000
0102030405060708090a0b0c  00 000000  0000 1000  00000000 00000000 0000ffff c6336407
82 00 0005  1000 1000  00 000000`

func TestMarshalMapPortSetByteExact(t *testing.T) {
	req := mapReq(7200, 0, 0, PortSetOption(PortSet{Size: 65535}))
	got := mustMarshal(t, req)
	want := unhex(t, b4RequestHex)
	if len(got) != 72 || !bytes.Equal(got, want) {
		t.Fatalf("RFC7753 §4: MAP+PORT_SET request\n got %x (%d)\nwant %x", got, len(got), want)
	}
	resp := &Message{
		Response: true, Opcode: OpMap, Lifetime: 7200, Epoch: 42,
		Map:     &MapData{Nonce: testNonce, ExternalPort: 4096, ExternalIP: extAddr},
		Options: []Option{PortSetOption(PortSet{Size: 4096, FirstInternalPort: 4096})},
	}
	got = mustMarshal(t, resp)
	want = unhex(t, aftrResponseHex)
	if !bytes.Equal(got, want) {
		t.Fatalf("RFC7753 §4.2: MAP+PORT_SET response\n got %x\nwant %x", got, want)
	}
	m, err := Parse(want)
	if err != nil {
		t.Fatal(err)
	}
	ps, ok, err := m.PortSet()
	if !ok || err != nil || ps != (PortSet{Size: 4096, FirstInternalPort: 4096}) {
		t.Fatalf("PortSet() = %+v %v %v", ps, ok, err)
	}
	if m.Map.ExternalIP != extAddr || m.Epoch != 42 || m.Result != Success || !m.Response {
		t.Fatalf("decoded %+v %+v", m, m.Map)
	}
}

func TestRoundTrip(t *testing.T) {
	desc := DescriptionOption("camera")
	tp := ThirdPartyOption(lanHost)
	f4 := FilterOption(FilterFor(netip.MustParsePrefix("203.0.113.0/24"), 443))
	f6 := FilterOption(Filter{PrefixLen: 32, RemoteIP: netip.MustParseAddr("2001:db8::")})
	ps := PortSetOption(PortSet{Size: 100, FirstInternalPort: 50000, Parity: true})
	pf := PreferFailureOption()
	p64 := Option{Code: OptPrefix64, Data: unhex(t, "000c 0064ff9b 00000000 00000000")}
	unknownMand := Option{Code: 99, Data: []byte{1, 2, 3}}
	unknownOpt := Option{Code: 200, Data: []byte{}}

	v6map := mapReq(60, 6, 8080, tp, pf, f4, f6, desc, p64, unknownMand, unknownOpt)
	v6map.ClientIP = v6Client
	v6map.Map.ExternalIP = netip.MustParseAddr("2001:db8::99")
	v6map.Map.ExternalPort = 8080

	cases := []struct {
		name string
		m    *Message
	}{
		{"RFC6887 §14.1.1: ANNOUNCE request", &Message{Opcode: OpAnnounce, ClientIP: b4Addr}},
		{"RFC6887 §14.1.1: ANNOUNCE response with PREFIX64 (RFC7225 §4.1)", &Message{Response: true, Opcode: OpAnnounce, Epoch: 9, Options: []Option{p64, p64}}},
		{"RFC6887 §11.1: MAP request, every option", v6map},
		{"RFC7753 §4: MAP request with PORT_SET", mapReq(3600, 17, 50000, ps)},
		{"RFC6887 §11.1: MAP error response", &Message{Response: true, Opcode: OpMap, Result: NoResources, Lifetime: 30, Epoch: 1, Map: mapReq(1, 6, 80).Map, Options: []Option{desc}}},
		{"RFC6887 §12.1: PEER request", peerReq(120, 6, 4000, 443, tp, desc)},
		{"RFC6887 §12.1: PEER response", &Message{Response: true, Opcode: OpPeer, Lifetime: 120, Epoch: 7, Map: &MapData{Nonce: testNonce, Protocol: 17, InternalPort: 5, ExternalPort: 6, ExternalIP: extAddr}, Peer: &PeerData{RemotePort: 53, RemoteIP: netip.MustParseAddr("2001:db8::53")}}},
		{"RFC6887 §19.2: unknown opcode keeps its payload", &Message{Opcode: 42, ClientIP: b4Addr, Payload: []byte{1, 2, 3, 4}}},
		{"RFC6887 §7.3: error response too short for MAP", &Message{Response: true, Opcode: OpMap, Result: MalformedRequest, Lifetime: 1800}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := mustMarshal(t, tc.m)
			if len(b)%4 != 0 {
				t.Fatalf("length %d not a multiple of 4", len(b))
			}
			got, err := Parse(b)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := *tc.m
			want.Version = Version
			if !reflect.DeepEqual(got, &want) {
				t.Fatalf("round trip\n got %+v\nwant %+v", got, &want)
			}
		})
	}
}

func TestOptionAccessors(t *testing.T) {
	f := FilterFor(netip.MustParsePrefix("203.0.113.0/24"), 443)
	m := mapReq(60, 6, 80, ThirdPartyOption(lanHost), PreferFailureOption(), FilterOption(f),
		FilterOption(Filter{RemoteIP: netip.IPv6Unspecified()}), DescriptionOption("ssh"))
	m, err := Parse(mustMarshal(t, m))
	if err != nil {
		t.Fatal(err)
	}
	if a, ok, err := m.ThirdParty(); a != lanHost || !ok || err != nil {
		t.Errorf("ThirdParty = %v %v %v", a, ok, err)
	}
	if !m.PreferFailure() {
		t.Error("PreferFailure = false")
	}
	fs, err := m.Filters()
	if err != nil || len(fs) != 2 || fs[0] != f || fs[0].PrefixLen != 120 || !fs[0].Valid() {
		t.Errorf("Filters = %+v %v", fs, err)
	}
	if d, ok, err := m.Description(); d != "ssh" || !ok || err != nil {
		t.Errorf("Description = %q %v %v", d, ok, err)
	}
	if _, ok, err := m.PortSet(); ok || err != nil {
		t.Errorf("PortSet present: %v %v", ok, err)
	}
	if _, err := DescriptionOption("\xff").Description(); !errors.Is(err, ErrDescription) {
		t.Errorf("RFC7220 §2: invalid UTF-8: %v", err)
	}
	if _, err := (Option{Code: OptPortSet, Data: []byte{1}}).PortSet(); !errors.Is(err, ErrOptionLength) {
		t.Errorf("short PORT_SET: %v", err)
	}
	for _, tc := range []struct {
		f    Filter
		want bool
	}{
		{Filter{PrefixLen: 96, RemoteIP: peerAddr}, true},
		{Filter{PrefixLen: 95, RemoteIP: peerAddr}, false},
		{Filter{PrefixLen: 0, RemoteIP: peerAddr}, true},
		{Filter{PrefixLen: 129, RemoteIP: v6Client}, false},
		{Filter{PrefixLen: 1, RemoteIP: v6Client}, true},
	} {
		if got := tc.f.Valid(); got != tc.want {
			t.Errorf("RFC6887 §13.3: %+v Valid = %v", tc.f, got)
		}
	}
}

// opt encodes one option by hand: code, length field, data (padded).
func opt(code byte, length int, data ...byte) []byte {
	b := []byte{code, 0, byte(length >> 8), byte(length)}
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func TestParseErrors(t *testing.T) {
	base := mustMarshal(t, mapReq(60, 6, 80))
	with := func(extra ...[]byte) []byte {
		b := append([]byte(nil), base...)
		for _, e := range extra {
			b = append(b, e...)
		}
		return b
	}
	z16 := make([]byte, 16)
	cases := []struct {
		name string
		b    []byte
		err  error
		code ResultCode
	}{
		{"RFC6887 §8.2: 20 octets", base[:20], ErrShort, MalformedRequest},
		{"RFC6887 §7: over 1100 octets", append(with(), make([]byte, 1044)...), ErrTooLong, MalformedRequest},
		{"RFC6887 §8.2: not a multiple of 4", with([]byte{0, 0}), ErrNotAligned, MalformedRequest},
		{"RFC6887 §7.1: version 1", append([]byte{1}, base[1:]...), ErrVersion, UnsuppVersion},
		{"RFC6887 §7.1: NAT-PMP version 0", append([]byte{0}, base[1:]...), ErrVersion, UnsuppVersion},
		{"RFC6887 §11.1: MAP shorter than 60", base[:56], ErrShortOpcode, MalformedRequest},
		{"RFC6887 §12.1: PEER shorter than 80", mustMarshal(t, peerReq(60, 6, 80, 443))[:76], ErrShortOpcode, MalformedRequest},
		{"RFC6887 §7.3: option length past the end", with(opt(200, 8, 0, 0, 0, 0)), ErrOptionFraming, MalformedOption},
		{"RFC6887 §7.3: option padding past the end", with([]byte{200, 0, 0, 5, 1, 2, 3, 4}), ErrOptionFraming, MalformedOption},
		{"RFC6887 §13.1: THIRD_PARTY of 4 octets", with(opt(1, 4, 192, 0, 2, 1)), ErrOptionLength, MalformedOption},
		{"RFC6887 §13.2: PREFER_FAILURE with data", with(opt(2, 4, 0, 0, 0, 0)), ErrOptionLength, MalformedOption},
		{"RFC6887 §13.3: FILTER of 16 octets", with(opt(3, 16, z16...)), ErrOptionLength, MalformedOption},
		{"RFC7753 §4: PORT_SET of 4 octets", with(opt(130, 4, 0, 1, 0, 80)), ErrOptionLength, MalformedOption},
		{"RFC6887 §7.3: THIRD_PARTY twice", with(opt(1, 16, z16...), opt(1, 16, z16...)), ErrOptionRepeat, MalformedOption},
		{"RFC6887 §7.3: PREFER_FAILURE twice", with(opt(2, 0), opt(2, 0)), ErrOptionRepeat, MalformedOption},
		{"RFC7753 §4: PORT_SET twice", with(opt(130, 5, 0, 2, 0, 80, 0), opt(130, 5, 0, 2, 0, 80, 0)), ErrOptionRepeat, MalformedOption},
		{"RFC7220 §2: DESCRIPTION twice", with(opt(128, 1, 'a'), opt(128, 1, 'b')), ErrOptionRepeat, MalformedOption},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(tc.b)
			if !errors.Is(err, tc.err) || m != nil {
				t.Fatalf("Parse = %v, %v; want %v", m, err, tc.err)
			}
			if got := ResultOf(err); got != tc.code {
				t.Fatalf("ResultOf = %v, want %v", got, tc.code)
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	base := mustMarshal(t, mapReq(60, 6, 80))
	with := func(extra ...[]byte) []byte {
		b := append([]byte(nil), base...)
		for _, e := range extra {
			b = append(b, e...)
		}
		return b
	}
	z20 := make([]byte, 20)
	anyV6 := append([]byte(nil), base...)
	clear(anyV6[44:60])
	reserved := append([]byte(nil), base...)
	reserved[2], reserved[3], reserved[37], reserved[39] = 0xaa, 0xbb, 0xcc, 0xdd
	errResp := append([]byte(nil), with(opt(200, 100))...) // broken framing
	errResp[1] |= 0x80
	errResp[3] = byte(MalformedOption)
	shortErr := append([]byte(nil), base[:24]...)
	shortErr[1] |= 0x80
	shortErr[3] = byte(MalformedRequest)
	dupErr := with(opt(1, 16, make([]byte, 16)...), opt(1, 16, make([]byte, 16)...))
	dupErr[1] |= 0x80
	dupErr[3] = byte(MalformedOption)
	respReserved := mustMarshal(t, &Message{Response: true, Opcode: OpAnnounce, Epoch: 5})
	copy(respReserved[12:], []byte{0xff, 0xff, 0xc0, 0, 0, 2})

	cases := []struct {
		name  string
		b     []byte
		check func(*Message) bool
	}{
		{"RFC6887 §13.3: FILTER may repeat", with(opt(3, 20, z20...), opt(3, 20, z20...)),
			func(m *Message) bool { fs, _ := m.Filters(); return len(fs) == 2 }},
		{"RFC7225 §4.1: PREFIX64 repeated is kept", with(opt(129, 4, 0, 4, 0, 0), opt(129, 4, 0, 4, 0, 0)),
			func(m *Message) bool { return len(m.Options) == 2 }},
		{"RFC6887 §7.3: unknown mandatory option kept raw", with(opt(99, 2, 7, 8)),
			func(m *Message) bool { return m.Options[0].Code == 99 && bytes.Equal(m.Options[0].Data, []byte{7, 8}) }},
		{"RFC6887 §7.3: zero-length option", with(opt(200, 0)),
			func(m *Message) bool { return len(m.Options) == 1 && len(m.Options[0].Data) == 0 }},
		{"RFC6887 §5: ::ffff:0.0.0.0 decodes to 0.0.0.0", base,
			func(m *Message) bool { return m.Map.ExternalIP == netip.IPv4Unspecified() && m.ClientIP == b4Addr }},
		{"RFC6887 §5: :: stays ::", anyV6,
			func(m *Message) bool { return m.Map.ExternalIP == netip.IPv6Unspecified() }},
		{"RFC6887 §7.1, §11.1: reserved fields ignored", reserved,
			func(m *Message) bool { return m.Map.Protocol == 6 && m.Map.InternalPort == 80 }},
		{"RFC6887 §7.2: response Reserved ignored", respReserved,
			func(m *Message) bool { return m.Epoch == 5 && !m.ClientIP.IsValid() }},
		{"RFC6887 §7.3: error response keeps a broken option tail as Payload", errResp,
			func(m *Message) bool { return m.Map != nil && len(m.Options) == 0 && len(m.Payload) == 4 }},
		{"RFC6887 §7.3: error response shorter than its opcode", shortErr,
			func(m *Message) bool { return m.Map == nil && m.Payload == nil && m.Result == MalformedRequest }},
		{"RFC6887 §7.3: error response may repeat options", dupErr,
			func(m *Message) bool { return len(m.Options) == 2 }},
		{"RFC6887 §19.2: unknown opcode", append([]byte{2, 77}, base[2:]...),
			func(m *Message) bool { return m.Opcode == 77 && len(m.Payload) == 36 && m.Map == nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(tc.b)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !tc.check(m) {
				t.Fatalf("unexpected %+v", m)
			}
		})
	}
}

func TestParseDoesNotAlias(t *testing.T) {
	b := mustMarshal(t, mapReq(60, 6, 80, DescriptionOption("abcd")))
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	clear(b)
	if d, _, _ := m.Description(); d != "abcd" {
		t.Fatalf("Description changed with the input: %q", d)
	}
}

func TestMarshalErrors(t *testing.T) {
	cases := []struct {
		name string
		m    *Message
		err  error
	}{
		{"MAP request without data", &Message{Opcode: OpMap}, ErrMissingData},
		{"PEER request without peer data", &Message{Opcode: OpPeer, Map: &MapData{}}, ErrMissingData},
		{"RFC6887 §7: over 1100 octets", mapReq(1, 6, 80, DescriptionOption(strings.Repeat("x", 1100))), ErrTooLong},
		{"unaligned payload", &Message{Opcode: 9, Payload: []byte{1}}, ErrNotAligned},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if b, err := Marshal(tc.m); !errors.Is(err, tc.err) || b != nil {
				t.Fatalf("Marshal = %x, %v; want %v", b, err, tc.err)
			}
		})
	}
	prefix := []byte{0xee}
	b, err := AppendMessage(prefix, &Message{Opcode: OpAnnounce, ClientIP: b4Addr})
	if err != nil || len(b) != 25 || b[0] != 0xee || b[1] != Version {
		t.Fatalf("AppendMessage = %x, %v", b, err)
	}
}

func TestNames(t *testing.T) {
	if MalformedRequest.String() != "MALFORMED_REQUEST" || ExcessiveRemotePeers.String() != "EXCESSIVE_REMOTE_PEERS" || ResultCode(99).String() != "RESULT(99)" {
		t.Error("ResultCode.String")
	}
	if OpPeer.String() != "PEER" || Opcode(9).String() != "OPCODE(9)" || OptPortSet.String() != "PORT_SET" {
		t.Error("Opcode/OptionCode.String")
	}
	for code := Success; code <= ExcessiveRemotePeers; code++ {
		want := uint32(LongErrorLifetime)
		switch code {
		case Success:
			want = 0
		case NetworkFailure, NoResources, UserExQuota, CannotProvideExternal:
			want = ShortErrorLifetime
		}
		if got := ErrorLifetime(code); got != want {
			t.Errorf("RFC6887 §7.4: ErrorLifetime(%v) = %d, want %d", code, got, want)
		}
	}
	if ResultOf(nil) != Success || ResultOf(errors.New("x")) != NoResources {
		t.Error("ResultOf catch-all")
	}
}
