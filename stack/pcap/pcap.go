// Package pcap reads and writes classic libpcap capture files with
// LINKTYPE_RAW (101): one IPv4 or IPv6 datagram per record, no link header.
// tcpdump, tshark and Wireshark read them as they are.
package pcap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// LinkTypeRaw is LINKTYPE_RAW: the packet begins with an IPv4 or IPv6 header.
const LinkTypeRaw = 101

const (
	magicMicro = 0xa1b2c3d4
	magicNano  = 0xa1b23c4d
	snapLen    = 65535
)

// Writer writes packets to a capture file. It is safe for concurrent use:
// the simulated networks record packets from many goroutines.
type Writer struct {
	mu  sync.Mutex
	w   *bufio.Writer
	c   io.Closer
	now func() time.Time
	err error
}

// NewWriter writes the file header to w and returns a Writer. If w is an
// io.Closer, Close closes it.
func NewWriter(w io.Writer) (*Writer, error) {
	pw := &Writer{w: bufio.NewWriter(w), now: time.Now}
	if c, ok := w.(io.Closer); ok {
		pw.c = c
	}
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], magicMicro)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], snapLen)
	binary.LittleEndian.PutUint32(h[20:], LinkTypeRaw)
	if _, err := pw.w.Write(h[:]); err != nil {
		return nil, err
	}
	return pw, nil
}

// WritePacket records one datagram stamped with the current time.
func (pw *Writer) WritePacket(pkt []byte) error {
	return pw.WritePacketAt(pw.now(), pkt)
}

// WritePacketAt records one datagram with the given timestamp.
func (pw *Writer) WritePacketAt(t time.Time, pkt []byte) error {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.err != nil {
		return pw.err
	}
	n := min(len(pkt), snapLen)
	var h [16]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(t.Unix()))
	binary.LittleEndian.PutUint32(h[4:], uint32(t.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(h[8:], uint32(n))
	binary.LittleEndian.PutUint32(h[12:], uint32(len(pkt)))
	if _, err := pw.w.Write(h[:]); err != nil {
		pw.err = err
		return err
	}
	if _, err := pw.w.Write(pkt[:n]); err != nil {
		pw.err = err
		return err
	}
	return nil
}

// Flush writes buffered records out.
func (pw *Writer) Flush() error {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.err != nil {
		return pw.err
	}
	return pw.w.Flush()
}

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("pcap: writer closed")

// Close flushes and closes the underlying file; later writes fail with
// ErrClosed instead of touching a closed file.
func (pw *Writer) Close() error {
	err := pw.Flush()
	pw.mu.Lock()
	if pw.err == nil {
		pw.err = ErrClosed
	}
	pw.mu.Unlock()
	if pw.c != nil {
		if cerr := pw.c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Errors returned by Reader.
var (
	ErrFormat   = errors.New("pcap: not a pcap file")
	ErrLinkType = errors.New("pcap: link type is not LINKTYPE_RAW")
)

// Reader reads LINKTYPE_RAW captures of either byte order and either
// timestamp resolution.
type Reader struct {
	r     *bufio.Reader
	order binary.ByteOrder
	nano  bool
	snap  uint32 // the file's snap length, at most MaxRecord
}

// MaxRecord bounds the data of one record: libpcap's MAXIMUM_SNAPLEN. A
// file whose header gives a snap length of 0 or more than that gets
// MaxRecord, as libpcap does.
const MaxRecord = 256 * 1024

// NewReader reads and checks the file header.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReader(r)
	var h [24]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	pr := &Reader{r: br}
	switch {
	case binary.LittleEndian.Uint32(h[:]) == magicMicro:
		pr.order = binary.LittleEndian
	case binary.BigEndian.Uint32(h[:]) == magicMicro:
		pr.order = binary.BigEndian
	case binary.LittleEndian.Uint32(h[:]) == magicNano:
		pr.order, pr.nano = binary.LittleEndian, true
	case binary.BigEndian.Uint32(h[:]) == magicNano:
		pr.order, pr.nano = binary.BigEndian, true
	default:
		return nil, ErrFormat
	}
	if lt := pr.order.Uint32(h[20:]) & 0x0fffffff; lt != LinkTypeRaw {
		return nil, fmt.Errorf("%w: %d", ErrLinkType, lt)
	}
	pr.snap = pr.order.Uint32(h[16:])
	if pr.snap == 0 || pr.snap > MaxRecord {
		pr.snap = MaxRecord
	}
	return pr, nil
}

// ReadPacket returns the next record's data and timestamp; io.EOF at the
// end. A record longer than the file's snap length is an ErrFormat: no
// writer makes one. What it allocates grows with the octets that arrive,
// not with the length a record header claims.
func (pr *Reader) ReadPacket() ([]byte, time.Time, error) {
	var h [16]byte
	if _, err := io.ReadFull(pr.r, h[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			err = fmt.Errorf("%w: truncated record header", ErrFormat)
		}
		return nil, time.Time{}, err
	}
	sec, frac := pr.order.Uint32(h[0:]), pr.order.Uint32(h[4:])
	incl := pr.order.Uint32(h[8:])
	if incl > pr.snap {
		return nil, time.Time{}, fmt.Errorf("%w: record of %d octets over the snap length %d", ErrFormat, incl, pr.snap)
	}
	b, err := readRecord(pr.r, int(incl))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%w: truncated record: %v", ErrFormat, err)
	}
	ns := int64(frac) * 1000
	if pr.nano {
		ns = int64(frac)
	}
	return b, time.Unix(int64(sec), ns), nil
}

// recordChunk is the most readRecord allocates ahead of the data.
const recordChunk = 16 << 10

// readRecord reads n octets, growing its buffer as they arrive: a record
// header that claims more than the file holds costs no more memory than
// the file does.
func readRecord(r io.Reader, n int) ([]byte, error) {
	b := make([]byte, 0, min(n, recordChunk))
	for len(b) < n {
		k := min(n-len(b), recordChunk)
		b = slices.Grow(b, k)
		m, err := io.ReadFull(r, b[len(b):len(b)+k])
		b = b[:len(b)+m]
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

// ReadAll reads a whole capture from r and returns its packets in file
// order (nil for an empty capture).
func ReadAll(r io.Reader) ([][]byte, error) {
	pr, err := NewReader(r)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for {
		p, _, err := pr.ReadPacket()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, p)
	}
}
