package memtun

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/tun"
	"github.com/lw4o6/lw4o6/tun/internal/devtest"
)

func TestPipeRoundTrip(t *testing.T) {
	devtest.LeakCheck(t)
	a, b := NewPipe(1500)
	t.Cleanup(func() { a.Close(); b.Close() })
	for _, offset := range []int{0, 16, tun.Headroom} {
		t.Run(fmt.Sprint("offset", offset), func(t *testing.T) {
			var want [][]byte
			var bufs [][]byte
			for i := range 3 * BatchSize / 2 { // more than one Read's worth
				pkt := devtest.IPv6(devtest.B4, devtest.AFTR, 4, 64, 0, devtest.IPv4UDP(devtest.Host, devtest.Peer, 1000, uint16(i), []byte{byte(i)}))
				want = append(want, pkt)
				bufs = append(bufs, devtest.Room(pkt, offset))
			}
			if n, err := a.Write(bufs, offset); n != len(bufs) || err != nil {
				t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(bufs))
			}
			got := devtest.Read(t, b, len(want), offset, 5*time.Second)
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("packet %d: got %x, want %x", i, got[i], want[i])
				}
			}
			// And back the other way.
			if n, err := b.Write(bufs[:1], offset); n != 1 || err != nil {
				t.Fatalf("Write back = %d, %v", n, err)
			}
			if back := devtest.Read(t, a, 1, offset, 5*time.Second); !bytes.Equal(back[0], want[0]) {
				t.Fatalf("back: got %x, want %x", back[0], want[0])
			}
		})
	}
}

func TestPipeShortBatchKeepsTheRest(t *testing.T) {
	a, b := NewPipe(1500)
	defer a.Close()
	defer b.Close()
	bufs := [][]byte{{1}, {2}, {3}}
	if n, err := a.Write(bufs, 0); n != 3 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	one := [][]byte{make([]byte, 10)}
	sizes := []int{0}
	for i := range 3 {
		n, err := b.Read(one, sizes, 4)
		if n != 1 || err != nil || sizes[0] != 1 || one[0][4] != byte(i+1) {
			t.Fatalf("Read %d = %d, %v, size %d, %x", i, n, err, sizes[0], one[0])
		}
	}
}

func TestPipeDropsWhatDoesNotFit(t *testing.T) {
	a, b := NewPipe(1500)
	defer a.Close()
	defer b.Close()
	if n, err := a.Write([][]byte{make([]byte, 1501), make([]byte, 100)}, 0); n != 1 || !errors.Is(err, tun.ErrTooBig) {
		t.Fatalf("Write = %d, %v; want 1, ErrTooBig", n, err)
	}
	if _, err := a.Write([][]byte{make([]byte, 200), {7}}, 0); err != nil {
		t.Fatal(err)
	}
	// A 10-octet buffer holds neither the 100- nor the 200-octet packet.
	bufs := [][]byte{make([]byte, 10)}
	sizes := []int{0}
	n, err := b.Read(bufs, sizes, 0)
	if n != 1 || err != nil || sizes[0] != 1 || bufs[0][0] != 7 {
		t.Fatalf("Read = %d, %v, size %d", n, err, sizes[0])
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	devtest.LeakCheck(t)
	a, b := NewPipe(1500)
	defer b.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := a.Read([][]byte{make([]byte, 1500)}, []int{0}, 0)
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	a.Close()
	a.Close() // twice is fine
	select {
	case err := <-errc:
		if !errors.Is(err, tun.ErrClosed) || !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Read after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
	if _, err := a.Write([][]byte{{1}}, 0); !errors.Is(err, tun.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	// The other end's writes go nowhere but do not block or fail.
	for range Depth + 10 {
		if _, err := b.Write([][]byte{{1}}, 0); err != nil {
			t.Fatalf("Write to a closed peer: %v", err)
		}
	}
}

// BenchmarkPipeRoundTrip moves one batch of 1280-octet packets from a to b
// and back.
func BenchmarkPipeRoundTrip(b *testing.B) {
	x, y := NewPipe(1500)
	defer x.Close()
	defer y.Close()
	bufs := make([][]byte, BatchSize)
	for i := range bufs {
		bufs[i] = make([]byte, tun.Headroom+1500)[:tun.Headroom+1280]
	}
	rbufs := make([][]byte, BatchSize)
	for i := range rbufs {
		rbufs[i] = make([]byte, tun.Headroom+1500)
	}
	sizes := make([]int, BatchSize)
	read := func(d tun.Device) {
		for got := 0; got < BatchSize; {
			n, err := d.Read(rbufs, sizes, tun.Headroom)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
	b.SetBytes(2 * BatchSize * 1280)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := x.Write(bufs, tun.Headroom); err != nil {
			b.Fatal(err)
		}
		read(y)
		if _, err := y.Write(bufs, tun.Headroom); err != nil {
			b.Fatal(err)
		}
		read(x)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*2*BatchSize), "ns/packet")
}
