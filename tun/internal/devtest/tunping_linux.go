package devtest

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/tun"
)

// PingThroughTUN gives the TUN d, which lives in ns, the address 192.0.2.1/24
// and brings it up; then, for several offsets and batch lengths, it writes an
// ICMP Echo Request from 192.0.2.2 into d and reads the kernel's Echo Reply
// back from d.
func PingThroughTUN(t *testing.T, ns *Netns, d tun.Device) {
	t.Helper()
	local, remote := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	ns.IP("addr", "add", "192.0.2.1/24", "dev", d.Name())
	ns.IP("link", "set", d.Name(), "up")
	cases := []struct{ writeOffset, readOffset, batch int }{
		{tun.Headroom, tun.Headroom, d.BatchSize()},
		{0, 0, 1},
		{4, 12, 2},
		{tun.Headroom, tun.Headroom, 1},
	}
	for i, c := range cases {
		seq := uint16(i + 1)
		req := Room(IPv4Echo(remote, local, 0x4c77, seq), c.writeOffset)
		if n, err := d.Write([][]byte{req}, c.writeOffset); n != 1 || err != nil {
			t.Fatalf("case %+v: Write = %d, %v", c, n, err)
		}
		if err := readReply(d, c.readOffset, c.batch, func(p []byte) bool {
			return IsEchoReply(p, local, remote, 0x4c77, seq)
		}); err != nil {
			t.Fatalf("case %+v: %v", c, err)
		}
	}
}

// readReply reads until match accepts a packet, skipping the rest (the
// kernel's IPv6 router solicitations and MLD reports), for five seconds.
func readReply(d tun.Device, offset, batch int, match func([]byte) bool) error {
	done := make(chan error, 1)
	go func() {
		bufs := make([][]byte, batch)
		for i := range bufs {
			bufs[i] = make([]byte, offset+d.MTU())
		}
		sizes := make([]int, batch)
		for {
			n, err := d.Read(bufs, sizes, offset)
			if err != nil {
				done <- err
				return
			}
			if n < 1 || n > batch {
				done <- fmt.Errorf("Read returned %d packets for %d buffers", n, batch)
				return
			}
			for i := range n {
				if match(bufs[i][offset : offset+sizes[i]]) {
					done <- nil
					return
				}
			}
		}
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s: no Echo Reply within 5s", d.Name())
	}
}
