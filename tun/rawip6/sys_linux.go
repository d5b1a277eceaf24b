package rawip6

import (
	"encoding/binary"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// icmp6Filter is ICMPV6_FILTER from <linux/icmpv6.h>, which x/sys lacks.
const icmp6Filter = 1

// oobLen holds the ancillary data of one message: IPV6_PKTINFO,
// IPV6_HOPLIMIT and IPV6_TCLASS.
const oobLen = 128

// mmsghdr is struct mmsghdr of recvmmsg(2) and sendmmsg(2); Go pads it as C
// does on 32- and 64-bit systems.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// batch is the scratch of one direction: messages, their I/O vectors,
// addresses and ancillary data, allocated once.
type batch struct {
	msgs  []mmsghdr
	iov   []unix.Iovec
	names []unix.RawSockaddrInet6
	oob   []byte
	// The arguments and results of the last call, for the RawConn callback.
	from, to, n int
	errno       syscall.Errno
}

func newBatch(n int) *batch {
	return &batch{
		msgs:  make([]mmsghdr, n),
		iov:   make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
		oob:   make([]byte, n*oobLen),
	}
}

// set points message i at buf, its address and ancillary scratch; oob is
// how much ancillary data it carries (for receiving: room for it).
func (b *batch) set(i int, buf []byte, oob int) {
	m := &b.msgs[i].hdr
	b.iov[i].Base = unsafe.SliceData(buf)
	b.iov[i].SetLen(len(buf))
	m.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	m.Namelen = unix.SizeofSockaddrInet6
	m.Iov = &b.iov[i]
	m.SetIovlen(1)
	m.Control = nil
	m.SetControllen(0)
	if oob > 0 {
		m.Control = &b.oob[i*oobLen]
		m.SetControllen(oob)
	}
	m.Flags = 0
	b.msgs[i].len = 0
}

// forget drops the references to the caller's buffers.
func (b *batch) forget(n int) {
	for i := range n {
		b.iov[i].Base = nil
	}
}

// recv is a RawConn.Read callback: recvmmsg(2) into msgs[from:to].
func (b *batch) recv(fd uintptr) bool {
	return b.call(fd, unix.SYS_RECVMMSG)
}

// send is a RawConn.Write callback: sendmmsg(2) of msgs[from:to].
func (b *batch) send(fd uintptr) bool {
	return b.call(fd, unix.SYS_SENDMMSG)
}

func (b *batch) call(fd uintptr, trap uintptr) bool {
	for {
		r, _, e := unix.Syscall6(trap, fd, uintptr(unsafe.Pointer(&b.msgs[b.from])), uintptr(b.to-b.from), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait for the poller
		}
		b.n, b.errno = int(r), e
		if e != 0 {
			b.n = 0
		}
		return true
	}
}

// received is what the ancillary data of a received message says.
type received struct {
	hopLimit, tclass uint8
	dst              [16]byte
	haveDst          bool
}

// parseCmsgs reads IPV6_PKTINFO, IPV6_HOPLIMIT and IPV6_TCLASS (RFC 3542
// §6) from oob without allocating; others are ignored. The hop limit
// defaults to 64 should the kernel not send one.
func parseCmsgs(oob []byte) received {
	r := received{hopLimit: 64}
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			break
		}
		data := oob[cmsgAlign(unix.SizeofCmsghdr):l]
		if h.Level == unix.IPPROTO_IPV6 {
			switch h.Type {
			case unix.IPV6_PKTINFO:
				if len(data) >= unix.SizeofInet6Pktinfo {
					copy(r.dst[:], data[:16])
					r.haveDst = true
				}
			case unix.IPV6_HOPLIMIT:
				if len(data) >= 4 {
					r.hopLimit = uint8(binary.NativeEndian.Uint32(data))
				}
			case unix.IPV6_TCLASS:
				if len(data) >= 4 {
					r.tclass = uint8(binary.NativeEndian.Uint32(data))
				}
			}
		}
		if next := cmsgAlign(l); next < len(oob) {
			oob = oob[next:]
		} else {
			break
		}
	}
	return r
}

// putCmsgs writes IPV6_TCLASS, IPV6_HOPLIMIT and, for a specified src,
// IPV6_PKTINFO into oob and returns their length.
func putCmsgs(oob []byte, tclass, hopLimit uint8, src *[16]byte) int {
	n := putCmsgInt(oob, unix.IPV6_TCLASS, int32(tclass))
	n += putCmsgInt(oob[n:], unix.IPV6_HOPLIMIT, int32(hopLimit))
	if *src != ([16]byte{}) {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[n]))
		h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
		data := oob[n+cmsgAlign(unix.SizeofCmsghdr):]
		copy(data[:16], src[:])
		clear(data[16:unix.SizeofInet6Pktinfo]) // any interface
		n += unix.CmsgSpace(unix.SizeofInet6Pktinfo)
	}
	return n
}

func putCmsgInt(oob []byte, typ int32, v int32) int {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.IPPROTO_IPV6, typ
	h.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(oob[cmsgAlign(unix.SizeofCmsghdr):], uint32(v))
	return unix.CmsgSpace(4)
}

func cmsgAlign(n int) int {
	const a = int(unsafe.Sizeof(uintptr(0)))
	return (n + a - 1) &^ (a - 1)
}
