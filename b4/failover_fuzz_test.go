package b4

import (
	"net/netip"
	"testing"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
)

// FuzzFailoverFromAccess: nothing sent from an address other than the
// B4's AFTR — softwire packets, ANNOUNCEs, ICMPv6 errors quoting anything —
// takes the binding away or makes the B4 ask the AFTR for anything, and no
// input panics.
func FuzzFailoverFromAccess(f *testing.F) {
	srv := pcp.NewServer(pcp.ServerConfig{Handler: newHandler(60)})
	sent := softwire(testB4, testAFTR, 0, udp4(netip.AddrPortFrom(testPublic, testFirst), netip.AddrPortFrom(testRemote, 53), 0, 64, []byte("q")))
	f.Add(uint8(0), udp4(aftrPCP4, allHostsPCP, 0, 64, srv.Announce()))
	f.Add(uint8(1), sent)
	f.Add(uint8(2), sent[:60])
	f.Add(uint8(3), []byte{0x60})
	e := newEnv(f, newHandler(3600), func(c *Config) { c.AnnounceGroup = testGroup })
	e.provisioned()
	f.Fuzz(func(t *testing.T, mode uint8, data []byte) {
		var pkt []byte
		dst := testB4
		if mode&4 != 0 {
			dst = testGroup
		}
		switch mode & 3 {
		case 0: // a softwire packet with data as the inner IPv4
			pkt = softwire(testSpoof, dst, 0, data)
		case 1: // an ICMPv6 1/5 quoting data
			pkt = packet.ICMPv6Error(packet.ICMPv6DstUnreachable, packet.ICMPv6CodeSourcePolicy, 0, testSpoof.As16(), dst.As16(), 64, data, packet.MaxICMPv6Error)
		case 2: // data as the whole IPv6 packet, source forced
			pkt = append([]byte(nil), data...)
			if len(pkt) >= 24 {
				copy(pkt[8:24], testSpoof.AsSlice())
			}
		case 3: // an ANNOUNCE-shaped packet with data as the PCP payload
			pkt = softwire(testSpoof, dst, 0, udp4(aftrPCP4, allHostsPCP, 0, 64, data))
		}
		e.b.FromAccess(pkt)
		if s := e.b.Status(); !s.Provisioned || s.Counters["reprovision-packets"] != 0 || s.Counters["in-pcp-announce-packets"] != 0 {
			t.Fatalf("a packet not from the AFTR changed the binding: %+v", s)
		}
		select {
		case r := <-e.aftr.reqs:
			t.Fatalf("a packet not from the AFTR made the B4 ask: %+v", r.msg)
		default:
		}
		for len(e.lan.ch) > 0 {
			<-e.lan.ch
		}
		for len(e.aftr.data) > 0 {
			<-e.aftr.data
		}
	})
}
