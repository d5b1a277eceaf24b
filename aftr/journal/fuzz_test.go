package journal

import (
	"bytes"
	"testing"
	"time"
)

// FuzzReplay feeds arbitrary octets to the log parser as a segment's
// records. Replay must never panic, must stop at the first torn or corrupt
// record, and what it kept must be exactly the valid prefix: re-encoding
// the records it accepted gives the octets before the cut.
func FuzzReplay(f *testing.F) {
	var seed []byte
	for i := range 3 {
		r := put(i, tStart.Add(time.Hour))
		seed = appendRecord(seed, &r)
	}
	d := del(1)
	seed = appendRecord(seed, &d)
	seed = appendRecord(seed, &Record{Kind: KindExpire, Time: tStart})
	seed = appendRecord(seed, &Record{Kind: KindEpoch, Time: tStart})
	f.Add(seed)
	f.Add(seed[:len(seed)-3])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := append(append([]byte(nil), logMagic[:]...), data...)
		s := newState(1<<10, 0)
		var again []byte
		res, fatal := readRecords(bytes.NewReader(in), logMagic, func(r *Record) error {
			if err := s.apply(r); err != nil {
				return err
			}
			again = appendRecord(again, r)
			return nil
		})
		if fatal != nil {
			if res.records > 1<<10 {
				t.Fatalf("fatal %v after %d records", fatal, res.records)
			}
			return // ErrTooMany: more than the bound of distinct bindings
		}
		if res.good < int64(len(logMagic)) || res.good > int64(len(in)) {
			t.Fatalf("good offset %d of %d", res.good, len(in))
		}
		if res.err == nil && res.good != int64(len(in)) {
			t.Fatalf("clean end at %d of %d", res.good, len(in))
		}
		if !bytes.Equal(again, in[len(logMagic):res.good]) {
			t.Fatalf("kept records do not re-encode to the prefix")
		}
		s.dropExpired(tStart)
		for e := range s.each() {
			_ = e.Entry()
		}
	})
}
