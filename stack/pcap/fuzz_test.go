package pcap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"testing"
)

// FuzzReader: the reader behind `lw4o6-aftr check` never panics on any
// octets, and what it returns is the file's: each packet is the data of
// the record at its place in the file, as long as the record header says,
// within the snap length, and the records it returns never run past the
// file's end. Seeds: testdata/fuzz/FuzzReader.
func FuzzReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		pkts, err := ReadAll(bytes.NewReader(b))
		if err != nil && !errors.Is(err, ErrFormat) && !errors.Is(err, ErrLinkType) {
			t.Fatalf("error %v is neither ErrFormat nor ErrLinkType", err)
		}
		if len(b) < 24 {
			if err == nil {
				t.Fatalf("a %d-octet file read", len(b))
			}
			return
		}
		order := binary.ByteOrder(binary.LittleEndian)
		if m := binary.BigEndian.Uint32(b); m == magicMicro || m == magicNano {
			order = binary.BigEndian
		}
		snap := order.Uint32(b[16:])
		if snap == 0 || snap > MaxRecord {
			snap = MaxRecord
		}
		off := 24
		for i, p := range pkts {
			if off+16+len(p) > len(b) {
				t.Fatalf("packet %d (%d octets) runs past the %d-octet file", i, len(p), len(b))
			}
			if incl := order.Uint32(b[off+8:]); int(incl) != len(p) || incl > snap {
				t.Fatalf("packet %d: %d octets, record header says %d, snap length %d", i, len(p), incl, snap)
			}
			if !bytes.Equal(p, b[off+16:off+16+len(p)]) {
				t.Fatalf("packet %d is not the record's data", i)
			}
			off += 16 + len(p)
		}
		if err == nil && off != len(b) {
			t.Fatalf("read without error, %d of %d octets accounted for", off, len(b))
		}
	})
}

// header is a LINKTYPE_RAW file header with the given snap length.
func header(snap uint32) []byte {
	h := make([]byte, 24)
	binary.LittleEndian.PutUint32(h, magicMicro)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], snap)
	binary.LittleEndian.PutUint32(h[20:], LinkTypeRaw)
	return h
}

func record(incl uint32, data []byte) []byte {
	r := make([]byte, 16, 16+len(data))
	binary.LittleEndian.PutUint32(r[8:], incl)
	binary.LittleEndian.PutUint32(r[12:], incl)
	return append(r, data...)
}

// A record longer than the snap length is refused; one of 4 GiB too, and
// a header claiming the most a record may hold over a few octets of data
// allocates about what the file holds, not what it claims.
func TestReaderBoundsRecords(t *testing.T) {
	file := append(header(1500), record(1501, make([]byte, 1501))...)
	if _, err := ReadAll(bytes.NewReader(file)); !errors.Is(err, ErrFormat) {
		t.Errorf("record over the snap length: %v, want ErrFormat", err)
	}
	file = append(header(0xffffffff), record(0xffffffff, []byte{1, 2, 3})...)
	if _, err := ReadAll(bytes.NewReader(file)); !errors.Is(err, ErrFormat) {
		t.Errorf("4 GiB record: %v, want ErrFormat", err)
	}
	file = append(header(0), record(MaxRecord, []byte{1, 2, 3})...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		if _, err := ReadAll(bytes.NewReader(file)); !errors.Is(err, ErrFormat) {
			t.Fatalf("truncated record: %v, want ErrFormat", err)
		}
	}
	runtime.ReadMemStats(&after)
	// bufio's 4 KiB and one 16 KiB chunk a read; the record's claimed
	// 256 KiB would be 2.5 MiB over the ten.
	if got := after.TotalAlloc - before.TotalAlloc; got > 10*64<<10 {
		t.Errorf("reading a truncated %d-octet record ten times allocated %d octets", MaxRecord, got)
	}
	// The most a record may hold still reads.
	data := bytes.Repeat([]byte{0x45}, MaxRecord)
	pkts, err := ReadAll(bytes.NewReader(append(header(0), record(MaxRecord, data)...)))
	if err != nil || len(pkts) != 1 || !bytes.Equal(pkts[0], data) {
		t.Fatalf("a %d-octet record: %d packets, %v", MaxRecord, len(pkts), err)
	}
}
