package rawip6

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/lw4o6/lw4o6/tun"
	"github.com/lw4o6/lw4o6/tun/internal/devtest"
)

const timeout = 5 * time.Second

var (
	local   = netip.MustParseAddr("2001:db8::1")
	nowhere = netip.MustParseAddr("2001:db8:ffff::1")
)

// openInNetns makes a namespace with 2001:db8::1 on its loopback and opens
// a Device bound to it there.
func openInNetns(t *testing.T, opts ...Option) *Device {
	t.Helper()
	ns := devtest.NewNetns(t)
	ns.AddLoopback("2001:db8::1")
	var d *Device
	if err := ns.Do(func() (err error) { d, err = Open(local, opts...); return err }); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

var modes = []struct {
	name string
	opts []Option
}{
	{"hdrincl", nil},
	{"kernel-header", []Option{WithKernelHeader()}},
}

func TestLoopback4in6(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			devtest.LeakCheck(t)
			d := openInNetns(t, m.opts...)
			var sent, bufs [][]byte
			for i := range 10 {
				inner := devtest.IPv4UDP(devtest.Host, devtest.Peer, 4000, uint16(i), bytes.Repeat([]byte{byte(i)}, 100*i))
				p := devtest.IPv6(local, local, 4, uint8(20+i), 0x28, inner) // DSCP AF11
				sent = append(sent, p)
				bufs = append(bufs, devtest.Room(p, tun.Headroom))
			}
			if n, err := d.Write(bufs, tun.Headroom); n != len(bufs) || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			got := devtest.Read(t, d, len(sent), 0, timeout)
			for i := range sent {
				if !bytes.Equal(got[i], sent[i]) {
					t.Fatalf("packet %d:\n got %x\nwant %x", i, got[i], sent[i])
				}
			}
			if st := d.Stats(); st.RxPackets != 10 || st.TxPackets != 10 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestICMPv6Errors(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			devtest.LeakCheck(t)
			d := openInNetns(t, append(m.opts, WithICMPv6(1))...)
			// An Echo Request (and the kernel's Echo Reply) do not pass
			// the filter; a Destination Unreachable, code 5 does.
			echo := devtest.ICMPv6(local, local, 128, 0, []byte("ping"))
			inner := devtest.IPv6(local, nowhere, 4, 64, 0, devtest.IPv4UDP(devtest.Host, devtest.Peer, 1, 2, nil))
			unreach := devtest.ICMPv6(local, local, 1, 5, inner)
			data := devtest.IPv6(local, local, 4, 64, 0, devtest.IPv4UDP(devtest.Host, devtest.Peer, 3, 4, nil))
			if n, err := d.Write([][]byte{echo, unreach, data}, 0); n != 3 || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			got := devtest.Read(t, d, 2, 8, timeout)
			var gotUnreach, gotData bool
			for _, p := range got {
				switch {
				case bytes.Equal(p, unreach):
					gotUnreach = true
				case bytes.Equal(p, data):
					gotData = true
				default:
					t.Fatalf("unexpected packet %x", p)
				}
			}
			if !gotUnreach || !gotData {
				t.Fatalf("got %x", got)
			}
			if st := d.Stats(); st.RxICMPv6 != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// An ICMPv6 message that arrives while Read waits on the data socket must
// wake it.
func TestICMPv6WakesRead(t *testing.T) {
	devtest.LeakCheck(t)
	d := openInNetns(t, WithICMPv6())
	result := make(chan []byte, 1)
	go func() {
		buf, sizes := make([]byte, 1500), []int{0}
		if _, err := d.Read([][]byte{buf}, sizes, 0); err != nil {
			result <- nil
			return
		}
		result <- buf[:sizes[0]]
	}()
	time.Sleep(50 * time.Millisecond)
	unreach := devtest.ICMPv6(local, local, 1, 5, make([]byte, 48))
	if _, err := d.Write([][]byte{unreach}, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-result:
		if !bytes.Equal(p, unreach) {
			t.Fatalf("got %x", p)
		}
	case <-time.After(timeout):
		t.Fatal("Read did not wake")
	}
}

func TestWriteFailures(t *testing.T) {
	d := openInNetns(t, WithKernelHeader())
	ok := devtest.IPv6(local, local, 4, 64, 0, devtest.IPv4UDP(devtest.Host, devtest.Peer, 1, 2, nil))
	bad := [][]byte{
		devtest.IPv4UDP(devtest.Host, devtest.Peer, 1, 2, nil), // not IPv6
		ok[:50], // payload length says more
		devtest.IPv6(local, local, 44, 64, 0, make([]byte, 8)), // a fragment header, WithKernelHeader
		devtest.IPv6(local, local, 58, 64, 0, make([]byte, 8)), // ICMPv6 without WithICMPv6
	}
	for i, b := range bad {
		if n, err := d.Write([][]byte{ok, b, ok}, 0); n != 2 || !errors.Is(err, tun.ErrMalformed) {
			t.Errorf("bad packet %d: Write = %d, %v; want 2, ErrMalformed", i, n, err)
		}
	}
	// No route to nowhere in the namespace: the kernel refuses it.
	unroutable := devtest.IPv6(local, nowhere, 4, 64, 0, devtest.IPv4UDP(devtest.Host, devtest.Peer, 1, 2, nil))
	if n, err := d.Write([][]byte{unroutable, ok}, 0); n != 1 || !errors.Is(err, unix.ENETUNREACH) {
		t.Errorf("Write unroutable = %d, %v; want 1, ENETUNREACH", n, err)
	}
	if st := d.Stats(); st.DropMalformed != 4 || st.TxErrors != 1 || st.TxPackets != 9 {
		t.Errorf("stats %+v", st)
	}
	devtest.Read(t, d, 9, 0, timeout)
}

// The header-included path also sends what the kernel could not build:
// an outer IPv6 fragment, flow label and all.
func TestHeaderIncludedSendsFragments(t *testing.T) {
	d := openInNetns(t)
	inner := devtest.IPv4UDP(devtest.Host, devtest.Peer, 1, 2, make([]byte, 200))
	// Two fragments (RFC 8200 §4.5) of one 4in6 packet, identification 7.
	frag := func(off int, more bool, part []byte) []byte {
		h := make([]byte, 8+len(part))
		h[0] = 4
		fo := uint16(off/8) << 3
		if more {
			fo |= 1
		}
		h[2], h[3] = byte(fo>>8), byte(fo)
		h[7] = 7
		copy(h[8:], part)
		p := devtest.IPv6(local, local, 44, 64, 0, h)
		p[1] |= 0x0a // a flow label the kernel would not have set
		return p
	}
	first, second := frag(0, true, inner[:128]), frag(128, false, inner[128:])
	if n, err := d.Write([][]byte{first, second}, 0); n != 2 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	got := devtest.Read(t, d, 1, 0, timeout)
	want := devtest.IPv6(local, local, 4, 64, 0, inner) // reassembled by the kernel
	if !bytes.Equal(got[0], want) {
		t.Fatalf("got %x\nwant %x", got[0], want)
	}
}

func TestReadDropsWhatDoesNotFit(t *testing.T) {
	d := openInNetns(t)
	big := devtest.IPv6(local, local, 4, 64, 0, devtest.IPv4UDP(devtest.Host, devtest.Peer, 1, 2, make([]byte, 1000)))
	small := devtest.IPv6(local, local, 4, 64, 0, devtest.IPv4UDP(devtest.Host, devtest.Peer, 1, 2, nil))
	if _, err := d.Write([][]byte{big, small}, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	bufs := [][]byte{make([]byte, 10+200), make([]byte, 10+200)}
	sizes := make([]int, 2)
	stuck := time.AfterFunc(timeout, func() { d.Close() })
	defer stuck.Stop()
	n, err := d.Read(bufs, sizes, 10)
	if n != 1 || err != nil || !bytes.Equal(bufs[0][10:10+sizes[0]], small) {
		t.Fatalf("Read = %d, %v: %x", n, err, bufs[0][10:10+sizes[0]])
	}
	if st := d.Stats(); st.DropTruncated != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	devtest.LeakCheck(t)
	d := openInNetns(t, WithICMPv6(1, 2))
	errc := make(chan error, 1)
	go func() {
		_, err := d.Read([][]byte{make([]byte, 1500)}, []int{0}, 0)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, tun.ErrClosed) {
			t.Fatalf("Read: %v", err)
		}
	case <-time.After(timeout):
		t.Fatal("Close did not unblock Read")
	}
	if _, err := d.Write([][]byte{make([]byte, 40)}, 0); !errors.Is(err, tun.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
}

func FuzzParseCmsgs(f *testing.F) {
	oob := make([]byte, oobLen)
	src := [16]byte(local.AsSlice())
	f.Add(oob[:putCmsgs(oob, 0x28, 33, &src)])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		parseCmsgs(b)
	})
}

func TestCmsgsRoundTrip(t *testing.T) {
	oob := make([]byte, oobLen)
	src := [16]byte(local.AsSlice())
	r := parseCmsgs(oob[:putCmsgs(oob, 0x28, 33, &src)])
	if r.tclass != 0x28 || r.hopLimit != 33 || !r.haveDst || r.dst != src {
		t.Fatalf("%+v", r)
	}
}

// BenchmarkLoopback sends a batch of 64 packets of 1280 octets to the
// Device's own address and reads them back.
func BenchmarkLoopback(b *testing.B) {
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			ns := devtest.NewNetns(b)
			ns.AddLoopback("2001:db8::1")
			var d *Device
			if err := ns.Do(func() (err error) { d, err = Open(local, m.opts...); return err }); err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			pkt := devtest.Room(devtest.IPv6(local, local, 4, 64, 0, devtest.IPv4UDP(devtest.Host, devtest.Peer, 1, 2, make([]byte, 1212))), tun.Headroom)
			wbufs := make([][]byte, BatchSize)
			rbufs := make([][]byte, BatchSize)
			for i := range wbufs {
				wbufs[i] = pkt
				rbufs[i] = make([]byte, tun.Headroom+1500)
			}
			sizes := make([]int, BatchSize)
			b.SetBytes(BatchSize * 1280)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.Write(wbufs, tun.Headroom); err != nil {
					b.Fatal(err)
				}
				for got := 0; got < BatchSize; {
					n, err := d.Read(rbufs, sizes, tun.Headroom)
					if err != nil {
						b.Fatal(err)
					}
					got += n
				}
			}
			if st := d.Stats(); st.TxPackets != st.RxPackets {
				b.Fatal(fmt.Sprintf("lost packets: %+v", st))
			}
		})
	}
}

// mmsghdr must have the size of C's struct mmsghdr.
func TestMmsghdrSize(t *testing.T) {
	want := uintptr(unix.SizeofMsghdr + 4)
	if a := unsafe.Alignof(mmsghdr{}); want%a != 0 {
		want += a - want%a
	}
	if got := unsafe.Sizeof(mmsghdr{}); got != want || unsafe.Sizeof(uintptr(0)) == 8 && got != 64 {
		t.Fatalf("sizeof mmsghdr = %d, want %d", got, want)
	}
}

func TestFreeBind(t *testing.T) {
	ns := devtest.NewNetns(t)
	ns.IP("link", "set", "lo", "up")
	for _, opts := range [][]Option{nil, {WithFreeBind()}} {
		var d *Device
		err := ns.Do(func() (err error) { d, err = Open(nowhere, opts...); return err })
		if (err == nil) != (len(opts) == 1) {
			t.Fatalf("Open(%v, %d options): %v", nowhere, len(opts), err)
		}
		if d != nil {
			d.Close()
		}
	}
}
