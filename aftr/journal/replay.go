package journal

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/netip"
	"os"
	"sort"
	"time"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/stack/portset"
)

// Entry is a binding replayed from the journal, with the nonce of its PCP
// mapping.
type Entry struct {
	Binding bindings.Binding
	Nonce   [12]byte
}

// entry is an Entry as replay holds it: compact (72 octets), since replay
// holds every binding of the AFTR at once.
type entry struct {
	b4, br [16]byte
	exp    int64  // Unix ns; 0 for a static binding
	seq    uint64 // record number, for the expiry marks after it
	nonce  [12]byte
	ip     [4]byte
	id     uint16
	a, k   uint8
	set    uint16
	used   bool
	static bool
}

func (e *entry) Entry() Entry {
	b := bindings.Binding{
		B4:     netip.AddrFrom16(e.b4),
		IPv4:   netip.AddrFrom4(e.ip),
		PSID:   portset.PSID{Offset: e.a, Length: e.k, ID: e.id},
		BR:     netip.AddrFrom16(e.br),
		Static: e.static,
		Set:    e.set,
	}
	if !e.static {
		b.Expires = time.Unix(0, e.exp)
	}
	return Entry{Binding: b, Nonce: e.nonce}
}

// dynKey names a dynamic binding: one of its B4's port sets.
type dynKey struct {
	b4  [16]byte
	set uint16
}

type staticKey struct {
	b4 [16]byte
	ip [4]byte
	id uint16
}

type mark struct {
	seq uint64
	t   int64
}

// state is the journal's content as it is replayed: the last Put of each
// B4 not deleted since, the expiry marks, the Epoch start.
type state struct {
	entries []entry
	free    []int32
	dyn     map[dynKey]int32
	static  map[staticKey]int32
	marks   []mark
	epoch   int64 // Unix ns; 0: none recorded
	seq     uint64
	live    int
	max     int
}

// ErrTooMany: the journal holds more bindings than Config.MaxBindings.
var ErrTooMany = errors.New("journal: too many bindings")

// newState returns an empty state for up to max bindings, sized for about
// hint of them (growing a map of a million keys costs more than reading
// them).
func newState(max, hint int) *state {
	hint = min(max, hint)
	return &state{dyn: make(map[dynKey]int32, hint), static: map[staticKey]int32{},
		entries: make([]entry, 0, hint), max: max}
}

// apply applies one decoded record (not kindNext or kindEnd).
func (s *state) apply(r *Record) error {
	s.seq++
	switch r.Kind {
	case KindPut:
		b := &r.Binding
		e := entry{b4: b.B4.As16(), br: b.BR.As16(), seq: s.seq, nonce: r.Nonce, ip: b.IPv4.As4(),
			id: b.PSID.ID, a: b.PSID.Offset, k: b.PSID.Length, set: b.Set, used: true, static: b.Static}
		if !b.Static {
			e.exp = b.Expires.UnixNano()
		}
		if i, ok := s.lookup(&e); ok {
			s.entries[i] = e
			return nil
		}
		if s.live >= s.max {
			return fmt.Errorf("%w: more than %d", ErrTooMany, s.max)
		}
		var i int32
		if n := len(s.free); n > 0 {
			i, s.free = s.free[n-1], s.free[:n-1]
			s.entries[i] = e
		} else {
			i = int32(len(s.entries))
			s.entries = append(s.entries, e)
		}
		s.live++
		if e.static {
			s.static[staticKey{e.b4, e.ip, e.id}] = i
		} else {
			s.dyn[dynKey{e.b4, e.set}] = i
		}
	case KindDelete:
		b := &r.Binding
		e := entry{b4: b.B4.As16(), ip: b.IPv4.As4(), id: b.PSID.ID, set: b.Set, static: b.Static}
		i, ok := s.lookup(&e)
		if !ok {
			return nil
		}
		if e.static {
			delete(s.static, staticKey{e.b4, e.ip, e.id})
		} else {
			delete(s.dyn, dynKey{e.b4, e.set})
		}
		s.entries[i] = entry{}
		s.free = append(s.free, i)
		s.live--
	case KindExpire:
		s.marks = append(s.marks, mark{s.seq, r.Time.UnixNano()})
	case KindEpoch:
		s.epoch = r.Time.UnixNano()
	default:
		return fmt.Errorf("%w: kind %d in a log", errCorrupt, r.Kind)
	}
	return nil
}

func (s *state) lookup(e *entry) (int32, bool) {
	if e.static {
		i, ok := s.static[staticKey{e.b4, e.ip, e.id}]
		return i, ok
	}
	i, ok := s.dyn[dynKey{e.b4, e.set}]
	return i, ok
}

// dropExpired removes the dynamic bindings past their lifetime at now, or
// at an expiry mark recorded after them; it returns how many it dropped.
func (s *state) dropExpired(now time.Time) int {
	// after[i] is the latest sweep time among marks[i:].
	after := make([]int64, len(s.marks)+1)
	after[len(s.marks)] = now.UnixNano()
	for i := len(s.marks) - 1; i >= 0; i-- {
		after[i] = max(after[i+1], s.marks[i].t)
	}
	n := 0
	for i := range s.entries {
		e := &s.entries[i]
		if !e.used || e.static {
			continue
		}
		j := sort.Search(len(s.marks), func(j int) bool { return s.marks[j].seq > e.seq })
		if e.exp <= after[j] {
			delete(s.dyn, dynKey{e.b4, e.set})
			*e = entry{}
			s.free = append(s.free, int32(i))
			s.live--
			n++
		}
	}
	s.marks = nil
	return n
}

// each yields the live entries.
func (s *state) each() iter.Seq[*entry] {
	return func(yield func(*entry) bool) {
		for i := range s.entries {
			if s.entries[i].used && !yield(&s.entries[i]) {
				return
			}
		}
	}
}

// File names in the journal directory.
const (
	snapshotName = "snapshot"
	snapshotTemp = "snapshot.tmp"
	logPrefix    = "log."
)

var (
	logMagic      = [8]byte{'l', 'w', '4', 'o', '6', 'j', 'l', '1'}
	snapshotMagic = [8]byte{'l', 'w', '4', 'o', '6', 'j', 's', '1'}
)

// readResult is how far a file was read.
type readResult struct {
	good    int64 // offset after the last good record (the magic counts)
	records int
	err     error // nil: clean end; else torn (io.ErrUnexpectedEOF) or corrupt
}

// openRegular opens path for reading, refusing anything but a regular file
// (a symbolic link, FIFO or device could block replay or read another file).
func openRegular(path string, flag int) (*os.File, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("journal: %s is not a regular file (%v)", path, fi.Mode().Type())
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	if fi2, err := f.Stat(); err != nil || !os.SameFile(fi, fi2) {
		f.Close()
		return nil, fmt.Errorf("journal: %s changed while it was opened", path)
	}
	return f, nil
}

// readRecords reads the records of one file (after its magic) from r,
// calling fn for each whole, valid one. It stops at the first record that
// is torn or corrupt, or at an error of fn (returned as fatal).
func readRecords(r io.Reader, magic [8]byte, fn func(*Record) error) (res readResult, fatal error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var m [8]byte
	if _, err := io.ReadFull(br, m[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			res.err = io.ErrUnexpectedEOF
			return res, nil
		}
		return res, err
	}
	if m != magic {
		res.err = fmt.Errorf("%w: bad magic %q", errCorrupt, m[:])
		return res, nil
	}
	res.good = int64(len(m))
	var h [headerLen]byte
	var p [maxPayload]byte
	var rec Record
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			switch {
			case errors.Is(err, io.EOF):
				return res, nil
			case errors.Is(err, io.ErrUnexpectedEOF):
				res.err = err
				return res, nil
			}
			return res, err
		}
		n, err := payloadLen(h[:])
		if err != nil {
			res.err = err
			return res, nil
		}
		if _, err := io.ReadFull(br, p[:n]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				res.err = io.ErrUnexpectedEOF
				return res, nil
			}
			return res, err
		}
		if err := decodeRecord(h[:], p[:n], &rec); err != nil {
			res.err = err
			return res, nil
		}
		if err := fn(&rec); err != nil {
			if errors.Is(err, errCorrupt) {
				res.err = err
				return res, nil
			}
			return res, err
		}
		res.good += int64(headerLen + n)
		res.records++
	}
}

// readSnapshot reads a whole snapshot into s and returns the first log
// segment it does not hold. Any defect makes the whole snapshot unusable:
// it was written to a temporary file and renamed only once complete.
func readSnapshot(path string, s *state) (next uint64, size int64, err error) {
	f, err := openRegular(path, os.O_RDONLY)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	first, ended := true, false
	var count uint64
	res, fatal := readRecords(f, snapshotMagic, func(r *Record) error {
		switch {
		case ended:
			return fmt.Errorf("%w: record after the end", errCorrupt)
		case first:
			if r.Kind != kindNext {
				return fmt.Errorf("%w: snapshot starts with kind %d", errCorrupt, r.Kind)
			}
			next, first = r.n, false
			return nil
		case r.Kind == kindEnd:
			if r.n != count {
				return fmt.Errorf("%w: snapshot ends after %d records, says %d", errCorrupt, count, r.n)
			}
			ended = true
			return nil
		case r.Kind != KindPut && r.Kind != KindEpoch:
			return fmt.Errorf("%w: kind %d in a snapshot", errCorrupt, r.Kind)
		}
		count++
		return s.apply(r)
	})
	switch {
	case fatal != nil:
		return 0, 0, fatal
	case res.err != nil:
		return 0, 0, fmt.Errorf("snapshot %s at offset %d: %w", path, res.good, res.err)
	case !ended:
		return 0, 0, fmt.Errorf("snapshot %s: %w: no end record", path, errCorrupt)
	}
	return next, res.good, nil
}
