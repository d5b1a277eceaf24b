package pcp

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"
)

// FuzzParse: Parse never panics, and what it accepts re-encodes to the same
// length and decodes to the same Message. Seeds: testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			if m != nil {
				t.Fatal("message with an error")
			}
			if ResultOf(err) == Success {
				t.Fatalf("error %v maps to SUCCESS", err)
			}
			return
		}
		out, err := Marshal(m)
		if err != nil {
			t.Fatalf("Marshal of a parsed message: %v\n%+v", err, m)
		}
		if len(out) != len(b) {
			t.Fatalf("re-encoded to %d octets from %d", len(out), len(b))
		}
		m2, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip differs\n%+v\n%+v", m, m2)
		}
	})
}

// fuzzHandler answers by the first nonce octet so that every path of the
// server is reachable.
type fuzzHandler struct{}

func (fuzzHandler) Map(r *Request) Response {
	switch r.Message.Map.Nonce[0] % 5 {
	case 1:
		return Response{Result: NoResources}
	case 2:
		return Response{Result: NotAuthorized, Lifetime: 77}
	case 3:
		resp := Response{Lifetime: 60, ExternalIP: extAddr, ExternalPort: r.Message.Map.ExternalPort}
		if r.Description != nil {
			resp.Options = []Option{DescriptionOption(*r.Description)}
		}
		return resp
	case 4:
		return Response{Lifetime: 1, ExternalIP: netip.IPv6Loopback(), Options: []Option{{Code: 250, Data: make([]byte, 1000)}}}
	}
	resp := Response{Lifetime: 7200, ExternalIP: extAddr, ExternalPort: 4096}
	if r.PortSet != nil {
		resp.PortSet = &PortSet{Size: min(r.PortSet.Size, 4096), FirstInternalPort: 4096}
	}
	return resp
}

func (h fuzzHandler) Peer(r *Request) Response { return h.Map(r) }

// FuzzServerHandle: Handle never panics, and every response is a PCP
// version 2 response with R set, at most 1100 octets, a multiple of 4, for
// the request's opcode, that Parse accepts. Seeds: testdata/fuzz/FuzzServerHandle.
func FuzzServerHandle(f *testing.F) {
	servers := []*Server{
		NewServer(ServerConfig{Handler: fuzzHandler{}}),
		NewServer(ServerConfig{Handler: fuzzHandler{}, ThirdPartyAllowed: func(any) bool { return true }}),
		NewServer(ServerConfig{}),
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		srcs := []netip.Addr{b4Addr}
		if len(b) >= HeaderLen {
			srcs = append(srcs, getAddr(b[8:24])) // the Client IP field, to get past ADDRESS_MISMATCH
		}
		orig := bytes.Clone(b)
		for _, s := range servers {
			for _, src := range srcs {
				out := s.Handle(b, src, "client")
				if !bytes.Equal(b, orig) {
					t.Fatal("Handle modified the request")
				}
				// The pooled path answers the same (the Epoch may have
				// ticked in between), after what dst holds.
				if app := s.AppendHandle([]byte{1, 2, 3, 4}, b, src, "client"); (out == nil) != (app == nil) ||
					out != nil && (!bytes.Equal(app[:4], []byte{1, 2, 3, 4}) || !sameButEpoch(app[4:], out)) {
					t.Fatalf("AppendHandle %x, Handle %x", app, out)
				}
				if out == nil {
					continue
				}
				if len(out) > MaxMessageLen || len(out)%4 != 0 {
					t.Fatalf("response of %d octets", len(out))
				}
				m, err := Parse(out)
				if err != nil {
					t.Fatalf("response does not parse: %v\n%x", err, out)
				}
				if !m.Response || m.Version != Version || m.Opcode != Opcode(b[1]&0x7f) {
					t.Fatalf("response header %+v for request %x", m, b[:2])
				}
				if m.Result != Success && m.Lifetime == 0 {
					t.Fatalf("error %v with lifetime 0", m.Result)
				}
			}
		}
	})
}

// sameButEpoch compares two responses but for their Epoch Time field.
func sameButEpoch(a, b []byte) bool {
	return len(a) == len(b) && len(a) >= HeaderLen && bytes.Equal(a[:8], b[:8]) && bytes.Equal(a[12:], b[12:])
}
