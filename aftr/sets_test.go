package aftr

import (
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/pcp"
)

// setReq asks for additional set n (Internal Port n ≥ 2, docs/port-sets.md)
// of 2048 ports: Internal Port + Size - 1 must stay ≤ 65535 (PROTOCOL.md
// §2.3), so not 65535.
func setReq(nonceByte byte, n uint16) mapReq {
	return mapReq{nonce: nonce(nonceByte), lifetime: 3600, internalPort: n,
		portSet: &pcp.PortSet{Size: 2048, FirstInternalPort: n}}
}

// docs/port-sets.md: a B4 asks for set 2 with Internal Port 2 and gets a
// second binding on the address of its first (RFC 7753 §6.1); both carry
// traffic both ways (RFC 7596 §6.2); the Internal Port is echoed (RFC 6887
// §11.3); a retransmission renews rather than adds; deleting set 2 leaves
// set 0.
func TestPCPAdditionalSet(t *testing.T) {
	r := newRig(t, nil)
	ip, first, size := r.bind(tB4A, 1)
	m := r.pcp(tB4A, setReq(1, 2))
	ip2, first2, size2 := granted(t, m)
	if m.Map.InternalPort != 2 {
		t.Errorf("internal port %d, want 2 echoed", m.Map.InternalPort)
	}
	if ip2 != ip || size2 != size || first2 == first {
		t.Fatalf("set 2 is %v %d+%d; set 0 %v %d+%d: want another block on the same address", ip2, first2, size2, ip, first, size)
	}
	if ps, _, _ := m.PortSet(); ps.FirstInternalPort != first2 {
		t.Errorf("PORT_SET first internal port %d, want %d (PROTOCOL.md §8 item 1)", ps.FirstInternalPort, first2)
	}
	if n := len(r.a.Bindings()); n != 2 {
		t.Fatalf("%d bindings, want 2", n)
	}
	// Upstream from either set is forwarded; downstream to either reaches the B4.
	for _, p := range []uint16{first + 7, first2 + 7} {
		r.a.FromAccess(encap(tB4A, tAFTR, udp4(ip, tRemote, p, 53, 64, []byte("q"))))
		r.oneInternet()
		r.a.FromInternet(udp4(tRemote, ip, 53, p, 64, []byte("a")))
		r.softwireTo(r.oneAccess(), tB4A)
	}
	// The same request again renews set 2.
	r.clock.Advance(time.Minute)
	if ip3, first3, _ := granted(t, r.pcp(tB4A, setReq(1, 2))); ip3 != ip2 || first3 != first2 {
		t.Errorf("repeat gave %v %d, want %v %d", ip3, first3, ip2, first2)
	}
	// Renewing set 0 renews set 0 only.
	q := b4Req(1, 3600)
	q.suggestIP, q.suggestPort = ip, first
	if _, f, _ := granted(t, r.pcp(tB4A, q)); f != first {
		t.Errorf("set 0 renewal gave %d, want %d", f, first)
	}
	// Delete set 2 (RFC 6887 §15.1, RFC 7753 §4.4): set 0 stays and carries traffic.
	del := setReq(1, 2)
	del.lifetime = 0
	if m := r.pcp(tB4A, del); m.Result != pcp.Success {
		t.Fatalf("delete set 2: %v", m.Result)
	}
	if n := len(r.a.Bindings()); n != 1 {
		t.Fatalf("%d bindings after deleting set 2, want 1", n)
	}
	r.a.FromInternet(udp4(tRemote, ip, 53, first2+7, 64, []byte("a")))
	r.a.FromInternet(udp4(tRemote, ip, 53, first+7, 64, []byte("a")))
	r.softwireTo(r.oneAccess(), tB4A)
	// The nonce still guards set 0 (RFC 6887 §11.3).
	if m := r.pcp(tB4A, setReq(9, 3)); m.Result != pcp.NotAuthorized {
		t.Errorf("another nonce while set 0 lives: %v, want NOT_AUTHORIZED", m.Result)
	}
}

// RFC 6887 §11.3 and §7.4: past MaxSetsPerB4 a new set is USER_EX_QUOTA
// with a short lifetime, counted; renewals at the cap still succeed; the
// per-prefix quota counts every set.
func TestPCPSetLimit(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxSetsPerB4 = 2 })
	r.bind(tB4A, 1)
	granted(t, r.pcp(tB4A, setReq(1, 2)))
	m := r.pcp(tB4A, setReq(1, 3))
	if m.Result != pcp.UserExQuota || m.Lifetime != pcp.ShortErrorLifetime {
		t.Errorf("third set: %v lifetime %d, want USER_EX_QUOTA 30", m.Result, m.Lifetime)
	}
	if got := r.counter("pcp-refused-set-limit"); got != 1 {
		t.Errorf("pcp-refused-set-limit %d, want 1", got)
	}
	granted(t, r.pcp(tB4A, setReq(1, 2)))
	if n := len(r.a.Bindings()); n != 2 {
		t.Errorf("%d bindings, want 2", n)
	}

	q := newRig(t, func(c *Config) { c.QuotaPerPrefix, c.QuotaPrefixLen = 2, 48 })
	q.bind(tB4A, 1)
	granted(t, q.pcp(tB4A, setReq(1, 2)))
	if m := q.pcp(tB4A, setReq(1, 3)); m.Result != pcp.UserExQuota {
		t.Errorf("set past the /48 quota: %v, want USER_EX_QUOTA", m.Result)
	}
	if got := q.counter("pcp-refused-set-limit"); got != 0 {
		t.Errorf("quota refusal counted as set limit (%d)", got)
	}
}

// Internal Ports 0 and 1 both name the first set; above MaxSet a protocol-0
// Internal Port names no set and stays MALFORMED_REQUEST (RFC 6887 §11.3).
func TestPCPSetNumbers(t *testing.T) {
	r := newRig(t, nil)
	r.bind(tB4A, 1)
	q := b4Req(1, 3600)
	q.internalPort = 1
	q.portSet = &pcp.PortSet{Size: 65535, FirstInternalPort: 1}
	granted(t, r.pcp(tB4A, q))
	if n := len(r.a.Bindings()); n != 1 {
		t.Errorf("internal port 1 made %d bindings, want the first set only", n)
	}
	if m := r.pcp(tB4A, setReq(1, 1024)); m.Result != pcp.MalformedRequest {
		t.Errorf("internal port 1024: %v, want MALFORMED_REQUEST", m.Result)
	}
	if n := len(r.a.Bindings()); n != 1 {
		t.Errorf("%d bindings, want 1", n)
	}
}
