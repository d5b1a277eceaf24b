package frag

import (
	"encoding/binary"
	"testing"

	"github.com/lw4o6/lw4o6/stack/packet"
)

// BenchmarkFragmentIPv6: a 1500-octet IPv4 packet encapsulated (1540) and
// split at the minimum IPv6 MTU, 1280: two fragments, the AFTR's common
// case (RFC 6333 §6.3).
func BenchmarkFragmentIPv6(b *testing.B) {
	pkt := ipv6(1500, packet.ProtoIPIP)
	ids := SequentialIDs(0, 0)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := FragmentIPv6(pkt, 1280, ids.Next32()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFragmentIPv4(b *testing.B) {
	pkt := ipv4(1500, 1, nil)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := FragmentIPv4ID(pkt, 576, 7); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReassembler4Add: one Add per op over 1500-octet datagrams in
// three fragments (mtu 576), each datagram completed in turn.
func BenchmarkReassembler4Add(b *testing.B) {
	frags, err := FragmentIPv4(ipv4(1500, 1, nil), 576)
	if err != nil {
		b.Fatal(err)
	}
	r := NewReassembler4(Config{})
	b.SetBytes(1500 / int64(len(frags)))
	b.ReportAllocs()
	i, id := 0, uint16(0)
	for b.Loop() {
		f := frags[i]
		binary.BigEndian.PutUint16(f[4:], id) // a new datagram each round
		packet.SetIPv4HeaderChecksum(f)
		out, err := r.Add(f)
		if err != nil || (out != nil) != (i == len(frags)-1) {
			b.Fatalf("fragment %d: %v", i, err)
		}
		if i++; i == len(frags) {
			i, id = 0, id+1
		}
	}
}

func BenchmarkReassembler6Add(b *testing.B) {
	frags, err := FragmentIPv6(ipv6(1500, packet.ProtoIPIP), 1280, 0)
	if err != nil {
		b.Fatal(err)
	}
	r := NewReassembler6(Config{})
	b.SetBytes(1540 / int64(len(frags)))
	b.ReportAllocs()
	i, id := 0, uint32(0)
	for b.Loop() {
		f := frags[i]
		binary.BigEndian.PutUint32(f[44:], id)
		out, err := r.Add(f)
		if err != nil || (out != nil) != (i == len(frags)-1) {
			b.Fatalf("fragment %d: %v", i, err)
		}
		if i++; i == len(frags) {
			i, id = 0, id+1
		}
	}
}
