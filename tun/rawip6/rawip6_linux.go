package rawip6

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lw4o6/lw4o6/tun"
)

// sys is the Linux state of a Device.
type sys struct {
	data, icmp *sock
	scope      uint32 // the zone's interface index, for link-local peers

	icmpQ    chan []byte   // whole ICMPv6 packets for Read
	icmpDone chan struct{} // closed when the ICMPv6 reader ends

	rmu  sync.Mutex
	rb   *batch
	rcvF func(uintptr) bool

	wmu   sync.Mutex
	wb    *batch
	sndF  func(uintptr) bool
	wsock []*sock // the socket of each message in wb
}

// sock is one raw socket.
type sock struct {
	f     *os.File
	rc    syscall.RawConn
	proto uint8
}

// aLongTimeAgo is a read deadline that has passed: setting it wakes a Read
// blocked on the data socket, so that it delivers queued ICMPv6 messages.
var aLongTimeAgo = time.Unix(1, 0)

func (d *Device) open() error {
	if d.local.Zone() != "" {
		ifi, err := net.InterfaceByName(d.local.Zone())
		if err != nil {
			return fmt.Errorf("rawip6: zone of %v: %w", d.local, err)
		}
		d.scope = uint32(ifi.Index)
	}
	var err error
	if d.data, err = d.socket(protoIPIP); err != nil {
		return err
	}
	if !d.cfg.kernelHeader {
		// Linux ≥ 4.5 (raw IPv6 sockets with IPV6_HDRINCL).
		if err := d.data.setInt(unix.IPPROTO_IPV6, unix.IPV6_HDRINCL, 1); err != nil {
			d.data.f.Close()
			return fmt.Errorf("rawip6: IPV6_HDRINCL (try WithKernelHeader): %w", err)
		}
	}
	if err := d.joinGroups(); err != nil {
		d.data.f.Close()
		return err
	}
	if len(d.cfg.icmpTypes) > 0 {
		if d.icmp, err = d.socket(protoICMPv6); err != nil {
			d.data.f.Close()
			return err
		}
		var filter unix.ICMPv6Filter // a set bit blocks the type on Linux
		for i := range filter.Data {
			filter.Data[i] = ^uint32(0)
		}
		for _, t := range d.cfg.icmpTypes {
			filter.Data[t>>5] &^= 1 << (t & 31)
		}
		var ferr error
		if err := d.icmp.rc.Control(func(fd uintptr) {
			ferr = unix.SetsockoptICMPv6Filter(int(fd), unix.IPPROTO_ICMPV6, icmp6Filter, &filter)
		}); err != nil || ferr != nil {
			d.data.f.Close()
			d.icmp.f.Close()
			return fmt.Errorf("rawip6: ICMP6_FILTER: %w", errors.Join(err, ferr))
		}
		d.icmpQ = make(chan []byte, icmpQueue)
		d.icmpDone = make(chan struct{})
		go d.readICMP()
	}
	d.rb, d.wb = newBatch(BatchSize), newBatch(BatchSize)
	d.rcvF, d.sndF = d.rb.recv, d.wb.send
	d.wsock = make([]*sock, BatchSize)
	return nil
}

// socket opens a raw IPv6 socket for proto, asks for the ancillary data
// Read needs and binds it to the local address.
func (d *Device) socket(proto uint8) (*sock, error) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(proto))
	if err != nil {
		return nil, fmt.Errorf("rawip6: socket(AF_INET6, SOCK_RAW, %d) (needs CAP_NET_RAW): %w", proto, err)
	}
	fail := func(what string, err error) (*sock, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("rawip6: %s: %w", what, err)
	}
	for _, o := range []int{unix.IPV6_RECVPKTINFO, unix.IPV6_RECVHOPLIMIT, unix.IPV6_RECVTCLASS} {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, o, 1); err != nil {
			return fail("setsockopt", err)
		}
	}
	// A bigger receive buffer absorbs bursts between Reads; the kernel
	// caps SO_RCVBUF at net.core.rmem_max, which SO_RCVBUFFORCE may pass.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	if d.cfg.freeBind {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1); err != nil {
			return fail("IPV6_FREEBIND", err)
		}
	}
	if !d.local.IsUnspecified() {
		if err := unix.Bind(fd, &unix.SockaddrInet6{Addr: d.local.As16(), ZoneId: d.scope}); err != nil {
			return fail(fmt.Sprintf("bind %v", d.local), err)
		}
	}
	f := os.NewFile(uintptr(fd), d.name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("rawip6: %w", err)
	}
	return &sock{f: f, rc: rc, proto: proto}, nil
}

func (s *sock) setInt(level, opt, v int) error {
	var serr error
	if err := s.rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, v) }); err != nil {
		return err
	}
	return serr
}

// Read implements tun.Device. One recvmmsg(2) fills up to BatchSize
// buffers; each packet's IPv6 header is rebuilt in the 40 octets at offset.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	d.rmu.Lock()
	defer d.rmu.Unlock()
	limit := min(len(bufs), len(sizes), BatchSize)
	for {
		if d.closed.Load() {
			return 0, tun.ErrClosed
		}
		if d.icmpQ != nil {
			if n := d.takeICMP(bufs[:limit], sizes, offset); n > 0 {
				return n, nil
			}
			// Clear a wake-up left by the ICMPv6 reader, then look again:
			// it queues before it sets the deadline.
			d.data.f.SetReadDeadline(time.Time{})
			if n := d.takeICMP(bufs[:limit], sizes, offset); n > 0 {
				return n, nil
			}
		}
		k := 0
		for ; k < limit && len(bufs[k]) > offset+ipv6HeaderLen; k++ {
			d.rb.set(k, bufs[k][offset+ipv6HeaderLen:], oobLen)
		}
		if k == 0 {
			return 0, io.ErrShortBuffer
		}
		d.rb.from, d.rb.to = 0, k
		err := d.data.rc.Read(d.rcvF)
		d.rb.forget(k)
		if err == nil && d.rb.errno != 0 {
			err = d.rb.errno
		}
		if err != nil {
			switch {
			case d.closed.Load() || errors.Is(err, os.ErrClosed):
				return 0, tun.ErrClosed
			case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, unix.ENOMEM), errors.Is(err, unix.ENOBUFS):
				continue
			}
			return 0, fmt.Errorf("%s: recvmmsg: %w", d.name, err)
		}
		if n := d.finishRead(d.rb, bufs, sizes, offset, protoIPIP); n > 0 {
			d.st.rx.Add(uint64(n))
			return n, nil
		}
	}
}

// finishRead rebuilds the IPv6 header of each of the b.n packets received
// and moves the survivors to the front. It returns how many survived.
func (d *Device) finishRead(b *batch, bufs [][]byte, sizes []int, offset int, proto uint8) int {
	n := 0
	for i := range b.n {
		m := &b.msgs[i]
		plen := int(m.len)
		if m.hdr.Flags&unix.MSG_TRUNC != 0 || plen > 0xffff || offset+ipv6HeaderLen+plen > len(bufs[n]) {
			d.st.truncated.Add(1) // too big for its buffer, or for the one it would move to
			continue
		}
		r := parseCmsgs(b.oob[i*oobLen : i*oobLen+int(m.hdr.Controllen)])
		if !r.haveDst {
			r.dst = d.local.As16()
		}
		if n != i {
			copy(bufs[n][offset+ipv6HeaderLen:], bufs[i][offset+ipv6HeaderLen:offset+ipv6HeaderLen+plen])
		}
		putHeader(bufs[n][offset:], r.tclass, proto, r.hopLimit, plen, &b.names[i].Addr, &r.dst)
		sizes[n] = ipv6HeaderLen + plen
		n++
	}
	return n
}

// takeICMP moves queued ICMPv6 packets into the caller's buffers.
func (d *Device) takeICMP(bufs [][]byte, sizes []int, offset int) int {
	n := 0
	for n < len(bufs) {
		select {
		case p := <-d.icmpQ:
			if offset+len(p) > len(bufs[n]) {
				d.st.truncated.Add(1)
				continue
			}
			sizes[n] = copy(bufs[n][offset:], p)
			n++
		default:
			return n
		}
	}
	return n
}

// readICMP reads the ICMPv6 socket until it is closed and queues each
// message, as a whole IPv6 packet, for Read. Messages are rare (errors), so
// each gets its own allocation.
func (d *Device) readICMP() {
	defer close(d.icmpDone)
	b := newBatch(1)
	buf := make([]byte, ipv6HeaderLen+0xffff)
	recv := b.recv
	for {
		b.set(0, buf[ipv6HeaderLen:], oobLen)
		b.from, b.to = 0, 1
		err := d.icmp.rc.Read(recv)
		if err == nil && b.errno != 0 {
			err = b.errno
		}
		if err != nil {
			if d.closed.Load() || errors.Is(err, os.ErrClosed) {
				return
			}
			continue // ENOMEM, ENOBUFS: try again
		}
		if b.n != 1 {
			continue
		}
		one := [][]byte{buf}
		if d.finishRead(b, one, []int{0}, 0, protoICMPv6) != 1 {
			continue
		}
		p := append([]byte(nil), buf[:ipv6HeaderLen+int(b.msgs[0].len)]...)
		select {
		case d.icmpQ <- p:
			d.st.rxICMP.Add(1)
			d.data.f.SetReadDeadline(aLongTimeAgo) // wake Read
		default:
			d.st.icmpQueue.Add(1)
		}
	}
}

// Write implements tun.Device. Packets go out in sendmmsg(2) batches of up
// to BatchSize; see the package comment for how their headers are sent.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	if d.closed.Load() {
		return 0, tun.ErrClosed
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	w := writer{d: d}
	for _, b := range bufs {
		pkt := b[offset:]
		s, err := d.route(pkt)
		if err != nil {
			d.st.malformed.Add(1)
			w.fail(fmt.Errorf("%s: %w", d.name, err))
			continue
		}
		if w.k == BatchSize || w.k > 0 && s != d.wsock[0] {
			if err := w.flush(); err != nil {
				return w.sent, err
			}
		}
		d.prepare(pkt, w.k)
		d.wsock[w.k] = s
		w.k++
	}
	if err := w.flush(); err != nil {
		return w.sent, err
	}
	return w.sent, w.first
}

// writer is the state of one Write.
type writer struct {
	d     *Device
	k     int // messages prepared in d.wb
	sent  int
	first error
}

func (w *writer) fail(err error) {
	if w.first == nil {
		w.first = err
	}
}

// flush sends the k prepared messages, all for the same socket. A message
// the kernel refuses is counted and skipped. It returns only ErrClosed.
func (w *writer) flush() error {
	d, b := w.d, w.d.wb
	defer func() { b.forget(w.k); w.k = 0 }()
	for i := 0; i < w.k; {
		b.from, b.to = i, w.k
		err := d.wsock[0].rc.Write(d.sndF)
		if err != nil {
			if d.closed.Load() || errors.Is(err, os.ErrClosed) {
				return tun.ErrClosed
			}
			return fmt.Errorf("%s: %w", d.name, err)
		}
		w.sent += b.n
		d.st.tx.Add(uint64(b.n))
		i += b.n
		if b.errno != 0 || b.n == 0 { // message i failed; the kernel sent none after it
			d.st.txErrors.Add(1)
			dst := netip.AddrFrom16(b.names[i].Addr)
			w.fail(fmt.Errorf("%s: send to %v: %w", d.name, dst, cmp.Or(b.errno, unix.EIO)))
			i++
		}
	}
	return nil
}

// route checks pkt and returns the socket it must leave by.
func (d *Device) route(pkt []byte) (*sock, error) {
	if err := checkPacket(pkt); err != nil {
		return nil, err
	}
	if !d.cfg.kernelHeader {
		return d.data, nil
	}
	switch nh := pkt[6]; {
	case nh == protoIPIP:
		return d.data, nil
	case nh == protoICMPv6 && d.icmp != nil:
		return d.icmp, nil
	default:
		return nil, fmt.Errorf("next header %d cannot be sent WithKernelHeader: %w", nh, tun.ErrMalformed)
	}
}

// prepare points message i of the write batch at pkt, which route
// accepted: the whole packet, or with WithKernelHeader its payload and the
// header's fields as ancillary data.
func (d *Device) prepare(pkt []byte, i int) {
	b := d.wb
	if d.cfg.kernelHeader {
		n := putCmsgs(b.oob[i*oobLen:(i+1)*oobLen], trafficClass(pkt), pkt[7], (*[16]byte)(pkt[8:24]))
		b.set(i, pkt[ipv6HeaderLen:], n)
	} else {
		b.set(i, pkt, 0)
	}
	b.names[i] = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: [16]byte(pkt[24:40])}
	if dst := netip.AddrFrom16(b.names[i].Addr); dst.IsLinkLocalUnicast() || dst.IsLinkLocalMulticast() {
		b.names[i].Scope_id = d.scope
	}
}

// Close implements tun.Device.
func (d *Device) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	err := d.data.f.Close()
	if d.icmp != nil {
		err = errors.Join(err, d.icmp.f.Close())
		<-d.icmpDone
	}
	return err
}
