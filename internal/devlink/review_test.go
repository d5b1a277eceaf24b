package devlink

import (
	"bytes"
	"testing"

	"github.com/lw4o6/lw4o6/tun"
)

// recDev records what Write is given.
type recDev struct{ got [][]byte }

func (d *recDev) Read([][]byte, []int, int) (int, error) { return 0, tun.ErrClosed }
func (d *recDev) Write(bufs [][]byte, off int) (int, error) {
	for _, b := range bufs {
		d.got = append(d.got, append([]byte(nil), b[off:]...))
	}
	return len(bufs), nil
}
func (d *recDev) BatchSize() int { return 1 }
func (d *recDev) MTU() int       { return 65535 }
func (d *recDev) Name() string   { return "rec" }
func (d *recDev) Close() error   { return nil }

// A softwire packet carrying a maximal IPv4 datagram is 65575 octets: Send
// must hand it to the device (which may refuse it), not panic on the pool
// buffer's size.
func TestReviewLinkSendLargerThanPoolBuffer(t *testing.T) {
	d := &recDev{}
	l := NewLink(d, nil)
	for _, n := range []int{0, 1, 65535, 65535 + 40} {
		pkt := bytes.Repeat([]byte{byte(n)}, n)
		l.Send(pkt)
		if got := d.got[len(d.got)-1]; !bytes.Equal(got, pkt) {
			t.Fatalf("Send(%d octets): device got %d octets", n, len(got))
		}
	}
}
