package rawip6

import (
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/tun/internal/devtest"
)

func TestDebugLoss(t *testing.T) {
	for iter := range 100 {
		d := openInNetns(t, WithKernelHeader())
		var bufs [][]byte
		for i := range 10 {
			bufs = append(bufs, devtest.IPv6(local, local, 4, 64, 0, devtest.IPv4UDP(devtest.Host, devtest.Peer, 1, uint16(i), nil)))
		}
		if n, err := d.Write(bufs, 0); n != 10 || err != nil {
			t.Fatal(n, err)
		}
		got := 0
		done := make(chan struct{})
		go func() {
			rb := make([][]byte, 64)
			for i := range rb {
				rb[i] = make([]byte, 2000)
			}
			sizes := make([]int, 64)
			for got < 10 {
				n, err := d.Read(rb, sizes, 0)
				if err != nil {
					break
				}
				got += n
			}
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			d.Close()
			<-done
			t.Fatalf("iter %d: got %d, stats %+v", iter, got, d.Stats())
		}
		d.Close()
	}
}
