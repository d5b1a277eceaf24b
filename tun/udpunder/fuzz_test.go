package udpunder

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

// The fuzzed server's world: three B4 addresses, three UDP endpoints.
var (
	fuzzAddrs = [3][16]byte{{0x20, 1, 0xd, 0xb8, 0xa, 15: 1}, {0x20, 1, 0xd, 0xb8, 0xb, 15: 1}, {0x20, 1, 0xd, 0xb8, 0xc, 15: 1}}
	fuzzEPs   = [3]netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.1:1000"),
		netip.MustParseAddrPort("192.0.2.2:2000"),
		netip.MustParseAddrPort("198.51.100.3:3000"),
	}
	fuzzAFTR = [16]byte{0x20, 1, 0xd, 0xb8, 15: 1}
)

const fuzzExpiry = time.Minute

// fuzzClaim and fuzzAnswer read a handshake from octets 40-42 (kind, id,
// grant), whatever the packet: the framing must cope with any predicate.
func fuzzClaim(p []byte) (uint64, bool) {
	if len(p) < 43 {
		return 0, false
	}
	return uint64(p[41] % 8), p[40] == 'C'
}

func fuzzAnswer(p []byte) (uint64, bool, bool) {
	if len(p) < 43 {
		return 0, false, false
	}
	return uint64(p[41] % 8), p[40] == 'A', p[42]&1 == 1
}

// model is what WithBinding promises (the package comment), kept apart
// from table: an entry is live for fuzzExpiry after its endpoint was last
// heard from, an expired one is gone, binding and all; a live bound entry
// refuses other endpoints' datagrams that claim nothing; a claim waits
// claimLife for its answer, which goes to the claimant and, granted,
// binds the address to it.
type model struct {
	now     time.Time
	entries map[[16]byte]*modelEntry
	claims  map[claimKey]claim
}

type modelEntry struct {
	ep    netip.AddrPort
	seen  time.Time
	bound bool
}

func (m *model) live(a [16]byte) *modelEntry {
	e := m.entries[a]
	if e == nil || m.now.Sub(e.seen) >= fuzzExpiry {
		delete(m.entries, a)
		return nil
	}
	return e
}

func (m *model) learn(a [16]byte, ep netip.AddrPort) {
	if e := m.live(a); e != nil {
		e.ep, e.seen = ep, m.now
		return
	}
	m.entries[a] = &modelEntry{ep: ep, seen: m.now}
}

// receive is whether a datagram is delivered.
func (m *model) receive(p []byte, ep netip.AddrPort) bool {
	a := [16]byte(p[8:24])
	if id, ok := fuzzClaim(p); ok {
		m.claims[claimKey{a, id}] = claim{ep: ep, when: m.now}
		if e := m.live(a); e == nil || !e.bound {
			m.learn(a, ep)
		}
		return true
	}
	if e := m.live(a); e != nil && e.bound && e.ep != ep {
		return false
	}
	m.learn(a, ep)
	return true
}

// sendTo is where a packet goes.
func (m *model) sendTo(p []byte) (netip.AddrPort, bool) {
	a := [16]byte(p[24:40])
	if id, isAnswer, granted := fuzzAnswer(p); isAnswer {
		k := claimKey{a, id}
		c, ok := m.claims[k]
		delete(m.claims, k)
		if ok && m.now.Sub(c.when) < claimLife {
			if granted {
				m.learn(a, c.ep)
				m.entries[a].bound = true
			}
			return c.ep, true
		}
	}
	if e := m.live(a); e != nil {
		return e.ep, true
	}
	return netip.AddrPort{}, false
}

// fuzzPacket is an IPv6 packet from src to dst carrying data.
func fuzzPacket(src, dst [16]byte, data []byte) []byte {
	p := make([]byte, 40+len(data))
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(len(data)))
	p[6], p[7] = 4, 64
	copy(p[8:], src[:])
	copy(p[24:], dst[:])
	copy(p[40:], data)
	return p
}

// FuzzServerBinding drives a server's receive and send paths (what Read
// and Write do with each datagram and packet, without the socket) with
// WithBinding's predicates faked, through a script of datagrams from three
// endpoints claiming three B4 addresses, handshakes, raw octets and the
// passing of time. Each step must do what the model says: validIPv6 keeps
// out every datagram that is no whole IPv6 packet, a datagram is delivered
// exactly when the model delivers it, and every packet goes to the
// model's endpoint: no endpoint ever receives a bound B4's traffic without
// a granted handshake of its own. Seeds: testdata/fuzz/FuzzServerBinding.
func FuzzServerBinding(f *testing.F) {
	f.Fuzz(func(t *testing.T, script []byte) {
		now := time.Unix(1e9, 0)
		d := &Device{mtu: DefaultMTU, table: newTable(64, fuzzExpiry, func() time.Time { return now }), claim: fuzzClaim, answer: fuzzAnswer}
		m := &model{now: now, entries: map[[16]byte]*modelEntry{}, claims: map[claimKey]claim{}}
		for step := 0; len(script) >= 4; step++ {
			op, x, y, z := script[0], script[1], script[2], script[3]
			script = script[4:]
			addr, ep := fuzzAddrs[x%3], fuzzEPs[(x/3)%3]
			switch op % 5 {
			case 0, 1: // a datagram: a claim ('C'), or data
				kind := byte('D')
				if op%5 == 0 {
					kind = 'C'
				}
				p := fuzzPacket(addr, fuzzAFTR, []byte{kind, y, z})
				if got, want := d.receive(p, ep), m.receive(p, ep); got != want {
					t.Fatalf("step %d: %c id %d from %v as %x: delivered %v, want %v", step, kind, y%8, ep, addr[4], got, want)
				}
			case 2: // a packet to a B4: an answer ('A'), or data
				kind := byte('D')
				if y&0x80 != 0 {
					kind = 'A'
				}
				p := fuzzPacket(fuzzAFTR, addr, []byte{kind, y, z})
				gotEP, gotOK := d.sendTo(p)
				wantEP, wantOK := m.sendTo(p)
				if gotEP != wantEP || gotOK != wantOK {
					t.Fatalf("step %d: %c id %d grant %d to %x sent to %v (%v), want %v (%v)", step, kind, y%8, z&1, addr[4], gotEP, gotOK, wantEP, wantOK)
				}
			case 3: // raw octets from an endpoint, as a B4 address's
				n := min(int(y), len(script))
				p := append([]byte(nil), script[:n]...)
				script = script[n:]
				valid := len(p) >= 40 && p[0]>>4 == 6 && int(binary.BigEndian.Uint16(p[4:])) == len(p)-40
				if validIPv6(p) != valid {
					t.Fatalf("step %d: validIPv6(% x) = %v", step, p, !valid)
				}
				if !valid {
					continue
				}
				copy(p[8:24], addr[:])
				if got, want := d.receive(p, ep), m.receive(p, ep); got != want {
					t.Fatalf("step %d: raw datagram from %v: delivered %v, want %v", step, ep, got, want)
				}
			case 4: // time passes: up to about twice the expiry
				dt := time.Duration(y) * time.Second / 2
				now = now.Add(dt)
				m.now = now
			}
		}
	})
}
