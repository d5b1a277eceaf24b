package rawip6

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/lw4o6/lw4o6/tun"
	"github.com/lw4o6/lw4o6/tun/internal/devtest"
)

func TestPutHeaderMatchesBuilder(t *testing.T) {
	payload := devtest.IPv4UDP(devtest.Host, devtest.Peer, 1, 2, []byte("x"))
	want := devtest.IPv6(devtest.B4, devtest.AFTR, 4, 63, 0xb8, payload)
	got := make([]byte, 40+len(payload))
	copy(got[40:], payload)
	src, dst := devtest.B4.As16(), devtest.AFTR.As16()
	putHeader(got, 0xb8, 4, 63, len(payload), &src, &dst)
	if !bytes.Equal(got, want) {
		t.Fatalf("got %x\nwant %x", got, want)
	}
	if err := checkPacket(got); err != nil || trafficClass(got) != 0xb8 {
		t.Fatalf("checkPacket %v, traffic class %#x", err, trafficClass(got))
	}
}

func TestCheckPacket(t *testing.T) {
	good := devtest.IPv6(devtest.B4, devtest.AFTR, 4, 64, 0, make([]byte, 20))
	for name, p := range map[string][]byte{
		"short":     good[:39],
		"ipv4":      devtest.IPv4UDP(devtest.Host, devtest.Peer, 1, 2, make([]byte, 40)),
		"truncated": good[:50],
		"padded":    append(append([]byte(nil), good...), 0),
	} {
		if err := checkPacket(p); !errors.Is(err, tun.ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestOpenRejectsNonIPv6(t *testing.T) {
	for _, a := range []netip.Addr{{}, devtest.Host, netip.MustParseAddr("::ffff:192.0.2.1")} {
		if _, err := Open(a); err == nil {
			t.Errorf("Open(%v) succeeded", a)
		}
	}
}

func FuzzCheckPacket(f *testing.F) {
	f.Add(devtest.IPv6(devtest.B4, devtest.AFTR, 4, 64, 0, make([]byte, 20)))
	f.Fuzz(func(t *testing.T, p []byte) {
		if checkPacket(p) == nil && (len(p) < 40 || p[0]>>4 != 6 || int(p[4])<<8|int(p[5]) != len(p)-40) {
			t.Fatalf("accepted %x", p)
		}
	})
}
