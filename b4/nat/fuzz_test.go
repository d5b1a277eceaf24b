package nat

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lw4o6/lw4o6/stack/portset"
)

// fuzzTable is a table with a known state, so that fuzzed inbound packets
// can hit mappings: UDP 192.0.2.10:4100 ↔ 4100 (sent to 198.51.100.1:53),
// TCP 192.0.2.10:4101 ↔ 4101 (to 198.51.100.1:443), echo id 4102 ↔ 4102
// (to 198.51.100.1), explicit UDP 192.0.2.11:4103 ↔ 4103 (which heard from
// 198.51.100.1:7 and, hairpinned, from 192.0.2.10:4100). Per-host quotas
// leave 192.0.2.10 room for one mapping more per protocol and one session
// more; tightPorts leaves it none for a mapping, tightSessions none for a
// session.
func fuzzTable(t testing.TB, f Filtering, tightPorts, tightSessions bool) *Table {
	now := time.Unix(1e9, 0)
	cfg := Config{Now: func() time.Time { return now }, Filtering: f, MaxSessions: 64, HostPorts: 2, HostSessions: 5}
	if tightPorts {
		cfg.HostPorts = 1
	}
	if tightSessions {
		cfg.HostSessions = 4
	}
	tb := New(cfg)
	if err := tb.SetExternal(pub, portset.Range{First: 4096, Size: 16}); err != nil {
		t.Fatal(err)
	}
	for _, p := range [][]byte{
		udpPacket(ap(lanA, 4100), ap(remote1, 53), nil),
		tcpPacket(ap(lanA, 4101), ap(remote1, 443), header.TCPFlagSyn, nil),
		echoPacket(lanA, remote1, header.ICMPv4Echo, 4102, 1, nil),
	} {
		if _, err := tb.Outbound(p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tb.AddExplicit(protoUDP, ap(lanB, 4103), 4103, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := tb.Inbound(udpPacket(ap(remote1, 7), ap(pub, 4103), nil)); err != nil {
		t.Fatal(err)
	}
	if hp, err := tb.Outbound(udpPacket(ap(lanA, 4100), ap(pub, 4103), nil)); err != nil || !hp {
		t.Fatal(hp, err)
	}
	return tb
}

// fixChecksums makes the checksums of a fuzzed packet right where its
// structure allows, so that the fuzzer reaches past checksum checks: the
// IPv4 header, the transport checksum and, in an ICMP error, the quoted
// IPv4 header and the quoted transport checksum when the quote is whole.
func fixChecksums(b []byte) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return
	}
	h := header.IPv4(b)
	ihl, tl := int(h.HeaderLength()), int(h.TotalLength())
	if ihl < 20 || tl < ihl || tl > len(b) {
		return
	}
	h.SetChecksum(0)
	h.SetChecksum(^checksum.Checksum(b[:ihl], 0))
	if h.FragmentOffset() != 0 || h.More() {
		return
	}
	fixTransport4(h.Protocol(), h.SourceAddressSlice(), h.DestinationAddressSlice(), b[ihl:tl], true)
}

func fixTransport4(proto uint8, src, dst, l4 []byte, outer bool) {
	switch proto {
	case protoTCP, protoUDP:
		off := tcpChecksum
		if proto == protoUDP {
			off = udpChecksum
		}
		if len(l4) < off+2 {
			return
		}
		l4[off], l4[off+1] = 0, 0
		ph := header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(proto),
			tcpip.AddrFrom4Slice(src), tcpip.AddrFrom4Slice(dst), uint16(len(l4)))
		c := ^checksum.Checksum(l4, ph)
		if proto == protoUDP && c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(l4[off:], c)
	case protoICMP:
		if len(l4) < 8 {
			return
		}
		if outer && len(l4) >= 28 && isICMPError(l4[0]) {
			e := l4[8:]
			if eihl := int(e[0]&0xf) * 4; e[0]>>4 == 4 && eihl >= 20 && eihl <= len(e) {
				eh := header.IPv4(e)
				eh.SetChecksum(0)
				eh.SetChecksum(^checksum.Checksum(e[:eihl], 0))
				if int(eh.TotalLength()) == len(e) && eh.FragmentOffset() == 0 && !eh.More() {
					fixTransport4(eh.Protocol(), eh.SourceAddressSlice(), eh.DestinationAddressSlice(), e[eihl:], false)
				}
			}
		}
		l4[2], l4[3] = 0, 0
		binary.BigEndian.PutUint16(l4[2:], ^checksum.Checksum(l4, 0))
	}
}

// FuzzOutboundInbound feeds arbitrary bytes to Outbound and Inbound. Mode
// bit 0 fixes the input's checksums first, bit 1 readdresses it to the
// public address, bits 2-3 pick the filtering, bits 4 and 5 leave no room
// in the per-host port and session quotas. Neither call may panic; a refused packet must be left unchanged;
// a translated packet whose input checksums were right must have right
// checksums; the per-host counters match the table and stay within the
// quotas (checkHosts).
func FuzzOutboundInbound(f *testing.F) {
	f.Add(udpPacket(ap(lanA, 4100), ap(remote1, 53), []byte("q")), uint8(0))
	f.Add(udpPacket(ap(remote1, 53), ap(pub, 4100), []byte("r")), uint8(0))
	f.Fuzz(func(t *testing.T, pkt []byte, mode uint8) {
		in := clone(pkt)
		if mode&2 != 0 && len(in) >= 20 {
			copy(in[ipDst:], pub.AsSlice())
		}
		if mode&1 != 0 {
			fixChecksums(in)
		}
		validBefore := checksumsValid(in) == nil
		tb := fuzzTable(t, Filtering((mode>>2&3)%3), mode&16 != 0, mode&32 != 0)

		out := clone(in)
		if _, err := tb.Outbound(out); err != nil {
			if !bytes.Equal(out, in) {
				t.Fatalf("Outbound: %v, and the packet was modified", err)
			}
		} else if validBefore {
			if err := checksumsValid(out); err != nil {
				t.Fatalf("Outbound: %v\nin  % x\nout % x", err, in, out)
			}
		}

		back := clone(in)
		if err := tb.Inbound(back); err != nil {
			if !bytes.Equal(back, in) {
				t.Fatalf("Inbound: %v, and the packet was modified", err)
			}
		} else if validBefore {
			if err := checksumsValid(back); err != nil {
				t.Fatalf("Inbound: %v\nin  % x\nout % x", err, in, back)
			}
		}
		checkHosts(t, tb, true)
		tb.Expire()
		checkHosts(t, tb, true)
	})
}
