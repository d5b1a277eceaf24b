// Package devtest holds what the tests of the tun backends share: packet
// builders, a reader with a deadline, a goroutine-leak check and, on Linux,
// throwaway network namespaces.
package devtest

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/tun"
)

// Documentation addresses (RFC 3849, RFC 5737) used by the tests.
var (
	B4   = netip.MustParseAddr("2001:db8:b4::1")
	B4b  = netip.MustParseAddr("2001:db8:b4::2")
	AFTR = netip.MustParseAddr("2001:db8::1")
	Host = netip.MustParseAddr("192.0.2.1")
	Peer = netip.MustParseAddr("198.51.100.1")
)

// IPv6 returns an IPv6 packet (RFC 8200 §3) with no extension headers.
func IPv6(src, dst netip.Addr, nextHeader, hopLimit, tclass uint8, payload []byte) []byte {
	p := make([]byte, 40+len(payload))
	p[0] = 0x60 | tclass>>4
	p[1] = tclass << 4
	binary.BigEndian.PutUint16(p[4:], uint16(len(payload)))
	p[6], p[7] = nextHeader, hopLimit
	s, d := src.As16(), dst.As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	copy(p[40:], payload)
	return p
}

// IPv4UDP returns an IPv4 UDP packet (RFC 791, RFC 768) with a valid header
// checksum and no UDP checksum.
func IPv4UDP(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = 64, 17
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], ^Checksum(p[:20], 0))
	binary.BigEndian.PutUint16(p[20:], sport)
	binary.BigEndian.PutUint16(p[22:], dport)
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

// Checksum adds b to the one's-complement sum sum (RFC 1071) and folds it.
func Checksum(b []byte, sum uint32) uint16 {
	for ; len(b) >= 2; b = b[2:] {
		sum += uint32(b[0])<<8 | uint32(b[1])
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// ICMPv6 returns an IPv6 packet carrying an ICMPv6 message (RFC 4443) of
// the given type and code whose body is body, with a valid checksum.
func ICMPv6(src, dst netip.Addr, typ, code uint8, body []byte) []byte {
	m := make([]byte, 8+len(body))
	m[0], m[1] = typ, code
	copy(m[8:], body)
	p := IPv6(src, dst, 58, 64, 0, m)
	var sum uint32
	for i := 8; i < 40; i += 2 { // pseudo-header (RFC 8200 §8.1)
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	sum += uint32(len(m)) + 58
	binary.BigEndian.PutUint16(p[42:], ^Checksum(m, sum))
	return p
}

// Room returns pkt behind offset octets of headroom.
func Room(pkt []byte, offset int) []byte {
	b := make([]byte, offset+len(pkt))
	copy(b[offset:], pkt)
	return b
}

// Read reads from d until want packets have arrived or timeout passes, and
// returns copies of them. It fails the test on a Read error or a timeout;
// the test's cleanup must Close d to end a Read left waiting.
func Read(t testing.TB, d tun.Device, want int, offset int, timeout time.Duration) [][]byte {
	t.Helper()
	type result struct {
		pkts [][]byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		var got [][]byte
		n := max(d.BatchSize(), 1)
		bufs := make([][]byte, n)
		for i := range bufs {
			bufs[i] = make([]byte, offset+65535)
		}
		sizes := make([]int, n)
		for len(got) < want {
			k, err := d.Read(bufs, sizes, offset)
			if err != nil {
				done <- result{got, err}
				return
			}
			for i := 0; i < k; i++ {
				got = append(got, append([]byte(nil), bufs[i][offset:offset+sizes[i]]...))
			}
		}
		done <- result{got, nil}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("%s: Read after %d of %d packets: %v", d.Name(), len(r.pkts), want, r.err)
		}
		return r.pkts
	case <-time.After(timeout):
		t.Fatalf("%s: no %d packets within %v", d.Name(), want, timeout)
		return nil
	}
}

// LeakCheck fails the test if, at cleanup, more goroutines run than when
// it was called (wireguard-go's goroutineLeakCheck). Register it before the
// cleanups that close devices, so that it runs after them.
func LeakCheck(t testing.TB) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		deadline := time.Now().Add(3 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("%d goroutines leaked:\n%s", n-before, buf)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// IPv4Echo returns an ICMP Echo Request (RFC 792) from src to dst.
func IPv4Echo(src, dst netip.Addr, id, seq uint16) []byte {
	p := make([]byte, 20+8+16)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = 64, 1
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], ^Checksum(p[:20], 0))
	m := p[20:]
	m[0] = 8
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], seq)
	copy(m[8:], "lw4o6 tun test!!")
	binary.BigEndian.PutUint16(m[2:], ^Checksum(m, 0))
	return p
}

// IsEchoReply reports whether p is an ICMP Echo Reply from src to dst with
// the given id and sequence number.
func IsEchoReply(p []byte, src, dst netip.Addr, id, seq uint16) bool {
	if len(p) < 28 || p[0] != 0x45 || p[9] != 1 || p[20] != 0 {
		return false
	}
	return netip.AddrFrom4([4]byte(p[12:16])) == src && netip.AddrFrom4([4]byte(p[16:20])) == dst &&
		binary.BigEndian.Uint16(p[24:]) == id && binary.BigEndian.Uint16(p[26:]) == seq
}
