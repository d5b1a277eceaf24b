// Package journal is the AFTR's binding journal: an append-only log of
// binding changes with periodic snapshots, so that a restart loses no
// binding whose PCP answer was sent (PROTOCOL.md §8.6) and the PCP Epoch
// continues (RFC 6887 §8.5: reset only when state was lost).
//
// Layout, in one directory: log.<seq> segments (16 hex digits) of records,
// each a length, a CRC32C and a fixed-size payload (record.go); and at most
// one snapshot, the live bindings at the start of a segment. Replay reads
// the snapshot and the segments after it in order, applies every record,
// and drops the bindings past their lifetime. A torn or corrupt record
// ends replay there: the segment is truncated before it (one log line),
// later segments are set aside, and every record before it counts.
//
// Group commit: Append encodes a record into the pending batch; one
// committer goroutine writes each batch with one write and one fsync, then
// runs the batch's callbacks in order. A caller that must not act before
// its record is durable (the PCP answer) acts in its callback, or in a
// Barrier's, which runs after everything appended before it. The pending
// batch is bounded: past MaxPending records (or callbacks) Append and
// Barrier fail with ErrFull, and the caller must not answer.
//
// Compaction: once the closed segments outgrow the snapshot (and
// CompactBytes), a goroutine replays the snapshot and those segments from
// disk into a new snapshot — written to a temporary file, fsynced, renamed,
// the directory fsynced — then removes the segments. It never touches the
// live state, so it holds no lock of the AFTR.
//
// Why not go.etcd.io/bbolt: every change would be a B+tree transaction
// with its own fsync and copy-on-write pages (batching through db.Batch
// still pays per-key page writes), the file only grows (freed pages are
// reused, never returned), and the state it would hold already lives in
// bindings.Table: the journal only needs appends in order and a full read
// at start, which an append-only log does with sequential I/O and ~70
// octets per change. The figures (BENCHMARKS.md) meet the targets.
package journal

import (
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	// ErrFull: the pending batch is at its bound; nothing was appended.
	ErrFull = errors.New("journal: pending queue full")
	// ErrClosed: the journal was closed.
	ErrClosed = errors.New("journal: closed")
)

// Config configures a Journal.
type Config struct {
	// Dir is the journal's directory, made (0700) if missing.
	Dir string
	// Now is the clock that decides which bindings have expired; nil:
	// time.Now.
	Now func() time.Time
	// Logger receives the journal's log; nil discards it.
	Logger *slog.Logger
	// MaxPending bounds the records, and separately the callbacks,
	// waiting for their fsync (default 65536).
	MaxPending int
	// MaxBindings bounds the bindings replay holds (default 2^24): a
	// journal with more is refused rather than exhausting memory.
	MaxBindings int
	// SegmentBytes is the size past which the committer starts a new log
	// segment (default 16 MiB).
	SegmentBytes int64
	// CompactBytes is the least size of closed segments that triggers a
	// compaction (default 64 MiB); it also waits until they outgrow the
	// snapshot, so the journal stays within about twice the live state.
	CompactBytes int64
}

func (c *Config) defaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 1 << 16
	}
	if c.MaxBindings <= 0 {
		c.MaxBindings = 1 << 24
	}
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = 16 << 20
	}
	if c.CompactBytes <= 0 {
		c.CompactBytes = 64 << 20
	}
}

// maxClosedSegments triggers a compaction whatever their size, so that
// restarts (each opens a segment) cannot pile up files.
const maxClosedSegments = 16

// State is what Open replayed.
type State struct {
	// Found: a journal was present and replayed (false when it was
	// missing, empty, or set aside as unreadable: state was lost).
	Found bool
	// Lost is why a journal that was present could not be used (it was
	// set aside as *.bad); nil otherwise.
	Lost error
	// EpochStart is the recorded PCP Epoch start; zero if none.
	EpochStart time.Time
	// Records counts the records replayed; Live the bindings kept;
	// Expired those dropped as past their lifetime.
	Records, Live, Expired int
	// Truncated counts the octets cut from a torn or corrupt tail.
	Truncated int64

	s *state
}

// Bindings yields the replayed bindings (valid until Release).
func (st *State) Bindings() iter.Seq[Entry] {
	return func(yield func(Entry) bool) {
		if st.s == nil {
			return
		}
		for e := range st.s.each() {
			if !yield(e.Entry()) {
				return
			}
		}
	}
}

// Release frees the replayed state.
func (st *State) Release() { st.s = nil }

// Stats are the journal's counters.
type Stats struct {
	Records     uint64 // records made durable
	Batches     uint64 // write+fsync rounds
	Full        uint64 // appends and barriers refused at the bound
	Compactions uint64
	Segments    int   // closed log segments
	LogBytes    int64 // octets in closed segments
}

type segment struct {
	seq   uint64
	bytes int64
}

type batch struct {
	buf []byte
	n   int
	cbs []func(error)
}

// Journal is an open journal. Append, Barrier, Sync and Stats are safe for
// concurrent use.
type Journal struct {
	cfg Config
	log *slog.Logger
	dir string

	mu      sync.Mutex
	cur     *batch
	spare   *batch
	closing bool
	killed  bool
	failed  error // sticky: after a failed write or fsync nothing is durable
	full    uint64
	wake    chan struct{}
	kill    chan struct{}
	wg      sync.WaitGroup

	// Committer only.
	f        *os.File
	seq      uint64
	fileSize int64

	smu        sync.Mutex // closed, snapBytes, stats, compacting
	closed     []segment
	snapBytes  int64
	compacting bool
	records    uint64
	batches    uint64
	compacts   uint64
}

// Open replays the journal in cfg.Dir and opens it for appending. It fails
// when the directory cannot be used, a journal file is not a regular file,
// reading fails, or the journal holds more than MaxBindings; a snapshot
// that cannot be read is set aside and reported as State.Lost.
func Open(cfg Config) (*Journal, *State, error) {
	cfg.defaults()
	if cfg.Dir == "" {
		return nil, nil, errors.New("journal: no directory")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	if fi, err := os.Stat(cfg.Dir); err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	} else if !fi.IsDir() {
		return nil, nil, fmt.Errorf("journal: %s is not a directory", cfg.Dir)
	}
	j := &Journal{cfg: cfg, log: cfg.Logger, dir: cfg.Dir, cur: &batch{}, spare: &batch{},
		wake: make(chan struct{}, 1), kill: make(chan struct{})}
	st, err := j.replay()
	if err != nil {
		return nil, nil, err
	}
	if err := j.newSegment(); err != nil {
		return nil, nil, err
	}
	j.wg.Add(1)
	go j.run()
	j.maybeCompact()
	return j, st, nil
}

func (j *Journal) path(name string) string { return filepath.Join(j.dir, name) }

func segName(seq uint64) string { return fmt.Sprintf("%s%016x", logPrefix, seq) }

// files lists the journal's files, refusing any that is not regular.
func (j *Journal) files() (segs []uint64, snapshot bool, err error) {
	des, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, false, fmt.Errorf("journal: %w", err)
	}
	for _, de := range des {
		name := de.Name()
		var seq uint64
		switch {
		case name == snapshotName, name == snapshotTemp:
		case strings.HasPrefix(name, logPrefix) && len(name) == len(logPrefix)+16:
			s, err := strconv.ParseUint(name[len(logPrefix):], 16, 64)
			if err != nil {
				continue
			}
			seq = s
		default:
			continue
		}
		if !de.Type().IsRegular() {
			return nil, false, fmt.Errorf("journal: %s is not a regular file (%v)", j.path(name), de.Type())
		}
		switch name {
		case snapshotName:
			snapshot = true
		case snapshotTemp: // a compaction that did not finish
			if err := os.Remove(j.path(name)); err != nil {
				return nil, false, fmt.Errorf("journal: %w", err)
			}
		default:
			segs = append(segs, seq)
		}
	}
	slices.Sort(segs)
	return segs, snapshot, nil
}

func (j *Journal) replay() (*State, error) {
	segs, hasSnap, err := j.files()
	if err != nil {
		return nil, err
	}
	st := &State{}
	// Size the state for the records the files can hold: a snapshot and
	// segments are mostly KindPut records of distinct B4s.
	var total int64
	for _, name := range append([]string{snapshotName}, mapSlice(segs, segName)...) {
		if fi, err := os.Lstat(j.path(name)); err == nil {
			total += fi.Size()
		}
	}
	s := newState(j.cfg.MaxBindings, int(total/(headerLen+putLen)))
	var next uint64
	if hasSnap {
		n, size, err := readSnapshot(j.path(snapshotName), s)
		switch {
		case errors.Is(err, ErrTooMany):
			return nil, err
		case err != nil:
			// The state is lost: set every file aside for the operator and
			// start afresh.
			st.Lost = err
			j.log.Error("journal: snapshot unreadable; binding state lost, files set aside as *.bad", "dir", j.dir, "err", err)
			for _, name := range append([]string{snapshotName}, mapSlice(segs, segName)...) {
				if err := os.Rename(j.path(name), j.path(name+".bad")); err != nil {
					return nil, fmt.Errorf("journal: %w", err)
				}
			}
			j.seq = lastOr(segs, 0)
			st.s = newState(j.cfg.MaxBindings, 0)
			return st, nil
		}
		next, j.snapBytes = n, size
		st.Found = true
	}
	cut := false
	for _, seq := range segs {
		j.seq = max(j.seq, seq)
		name := segName(seq)
		switch {
		case seq < next: // in the snapshot already: a compaction stopped before removing it
			if err := os.Remove(j.path(name)); err != nil {
				return nil, fmt.Errorf("journal: %w", err)
			}
			continue
		case cut: // after a corrupt record: not trustworthy
			j.log.Error("journal: segment after a corrupt one set aside", "file", j.path(name))
			if err := os.Rename(j.path(name), j.path(name+".bad")); err != nil {
				return nil, fmt.Errorf("journal: %w", err)
			}
			continue
		}
		res, err := j.replaySegment(seq, s, st)
		if err != nil {
			return nil, err
		}
		if res.err != nil {
			cut = true
		}
		if res.records > 0 {
			st.Found = true
		}
	}
	st.Records = int(s.seq)
	st.Expired = s.dropExpired(j.cfg.Now())
	st.Live = s.live
	if s.epoch != 0 {
		st.EpochStart = time.Unix(0, s.epoch)
	}
	st.s = s
	return st, nil
}

// replaySegment applies one segment; a torn or corrupt tail is cut off.
func (j *Journal) replaySegment(seq uint64, s *state, st *State) (readResult, error) {
	path := j.path(segName(seq))
	f, err := openRegular(path, os.O_RDWR)
	if err != nil {
		return readResult{}, fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	res, err := readRecords(f, logMagic, s.apply)
	if err != nil {
		return res, fmt.Errorf("journal: %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return res, fmt.Errorf("journal: %w", err)
	}
	if res.err != nil {
		j.log.Warn("journal: torn or corrupt tail truncated", "file", path, "offset", res.good,
			"dropped-octets", fi.Size()-res.good, "records-kept", res.records, "err", res.err)
		st.Truncated += fi.Size() - res.good
		if err := f.Truncate(res.good); err != nil {
			return res, fmt.Errorf("journal: %w", err)
		}
		if err := f.Sync(); err != nil {
			return res, fmt.Errorf("journal: %w", err)
		}
	}
	if res.records == 0 {
		// Nothing in it (a segment opened by a run that appended
		// nothing): no need to keep it.
		f.Close()
		return res, os.Remove(path)
	}
	j.closed = append(j.closed, segment{seq: seq, bytes: res.good})
	return res, nil
}

func mapSlice[T, U any](s []T, f func(T) U) []U {
	out := make([]U, len(s))
	for i, v := range s {
		out[i] = f(v)
	}
	return out
}

func lastOr(s []uint64, d uint64) uint64 {
	if len(s) == 0 {
		return d
	}
	return s[len(s)-1]
}

// newSegment starts the next log segment and makes it durable, name and
// all, before anything is appended to it.
func (j *Journal) newSegment() error {
	seq := j.seq + 1
	f, err := os.OpenFile(j.path(segName(seq)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if _, err := f.Write(logMagic[:]); err != nil {
		f.Close()
		return fmt.Errorf("journal: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("journal: %w", err)
	}
	if err := syncDir(j.dir); err != nil {
		f.Close()
		return err
	}
	if j.f != nil {
		j.f.Close()
		j.smu.Lock()
		j.closed = append(j.closed, segment{seq: j.seq, bytes: j.fileSize})
		j.smu.Unlock()
	}
	j.f, j.seq, j.fileSize = f, seq, int64(len(logMagic))
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("journal: fsync %s: %w", dir, err)
	}
	return nil
}

// readyLocked reports why an append would fail now.
func (j *Journal) readyLocked(n, cbs int) error {
	switch {
	case j.closing || j.killed:
		return ErrClosed
	case j.failed != nil:
		return j.failed
	case j.cur.n+n > j.cfg.MaxPending || len(j.cur.cbs)+cbs > j.cfg.MaxPending:
		j.full++
		return ErrFull
	}
	return nil
}

// Ready reports whether Append of one record without a callback would
// succeed now: nil, ErrFull, ErrClosed or the error that failed the
// journal. A caller that is the only appender between Ready and Append
// can check before it changes its state.
func (j *Journal) Ready() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.readyLocked(1, 0)
}

// Append adds r to the pending batch. done, if not nil, runs on the
// committer goroutine once r is durable (nil) or cannot be (the error);
// it must not block. Append fails, appending nothing, with ErrFull at the
// bound, ErrClosed, or the write error that failed the journal.
func (j *Journal) Append(r Record, done func(error)) error {
	cbs := 0
	if done != nil {
		cbs = 1
	}
	j.mu.Lock()
	if err := j.readyLocked(1, cbs); err != nil {
		j.mu.Unlock()
		return err
	}
	j.cur.buf = appendRecord(j.cur.buf, &r)
	j.cur.n++
	if done != nil {
		j.cur.cbs = append(j.cur.cbs, done)
	}
	j.mu.Unlock()
	j.signal()
	return nil
}

// Barrier runs done once every record appended before it is durable (nil)
// or cannot be (the error), on the committer goroutine; done must not
// block. It fails like Append.
func (j *Journal) Barrier(done func(error)) error {
	j.mu.Lock()
	if err := j.readyLocked(0, 1); err != nil {
		j.mu.Unlock()
		return err
	}
	j.cur.cbs = append(j.cur.cbs, done)
	j.mu.Unlock()
	j.signal()
	return nil
}

// Sync waits until every record appended before it is durable.
func (j *Journal) Sync() error {
	ch := make(chan error, 1)
	if err := j.Barrier(func(err error) { ch <- err }); err != nil {
		return err
	}
	return <-ch
}

func (j *Journal) signal() {
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// run is the committer: it writes and fsyncs each pending batch, then runs
// its callbacks.
func (j *Journal) run() {
	defer j.wg.Done()
	for {
		select {
		case <-j.wake:
		case <-j.kill:
			return
		}
		for {
			j.mu.Lock()
			if j.killed {
				j.mu.Unlock()
				return
			}
			b := j.cur
			if b.n == 0 && len(b.cbs) == 0 {
				closing := j.closing
				j.mu.Unlock()
				if closing {
					j.finish()
					return
				}
				break
			}
			j.cur, j.spare = j.spare, nil
			j.mu.Unlock()

			err := j.write(b)
			for _, cb := range b.cbs {
				cb(err)
			}
			clear(b.cbs)
			b.buf, b.n, b.cbs = b.buf[:0], 0, b.cbs[:0]
			j.mu.Lock()
			j.spare = b
			j.mu.Unlock()
			if err == nil && j.fileSize >= j.cfg.SegmentBytes {
				if err := j.newSegment(); err != nil {
					j.fail(err)
				}
				j.maybeCompact()
			}
		}
	}
}

// write makes one batch durable. After a failed write or fsync the journal
// fails for good: what reached the disk is unknown, so no later answer may
// claim durability.
func (j *Journal) write(b *batch) error {
	j.mu.Lock()
	err := j.failed
	j.mu.Unlock()
	if err != nil || b.n == 0 {
		return err
	}
	if _, err := j.f.Write(b.buf); err != nil {
		return j.fail(err)
	}
	if err := j.f.Sync(); err != nil {
		return j.fail(err)
	}
	j.fileSize += int64(len(b.buf))
	j.smu.Lock()
	j.records += uint64(b.n)
	j.batches++
	j.smu.Unlock()
	return nil
}

func (j *Journal) fail(err error) error {
	err = fmt.Errorf("journal: %w", err)
	j.mu.Lock()
	if j.failed == nil {
		j.failed = err
		j.log.Error("journal failed: binding changes are no longer durable, PCP answers stop", "err", err)
	}
	err = j.failed
	j.mu.Unlock()
	return err
}

func (j *Journal) finish() {
	if err := j.f.Sync(); err != nil {
		j.fail(err)
	}
	j.f.Close()
}

// Close writes and fsyncs what is pending (running its callbacks), waits
// for a compaction in progress, and closes the journal.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closing || j.killed {
		j.mu.Unlock()
		return ErrClosed
	}
	j.closing = true
	j.mu.Unlock()
	j.signal()
	j.wg.Wait()
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.failed
}

// Kill stops the journal as a crash would, for tests: records not yet
// written are discarded and their callbacks never run; a batch being
// written completes. Then it waits for a compaction in progress.
func (j *Journal) Kill() {
	j.mu.Lock()
	if j.closing || j.killed {
		j.mu.Unlock()
		return
	}
	j.killed = true
	j.mu.Unlock()
	close(j.kill)
	j.wg.Wait()
	j.f.Close()
}

// Stats returns the journal's counters.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	full := j.full
	j.mu.Unlock()
	j.smu.Lock()
	defer j.smu.Unlock()
	var b int64
	for _, s := range j.closed {
		b += s.bytes
	}
	return Stats{Records: j.records, Batches: j.batches, Full: full, Compactions: j.compacts,
		Segments: len(j.closed), LogBytes: b}
}
