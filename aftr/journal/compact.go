package journal

import (
	"bufio"
	"fmt"
	"os"
	"time"
)

// maybeCompact starts a compaction of the closed segments when they have
// outgrown the snapshot and CompactBytes, or are many; one at a time.
func (j *Journal) maybeCompact() {
	j.smu.Lock()
	defer j.smu.Unlock()
	if j.compacting || len(j.closed) == 0 {
		return
	}
	var b int64
	for _, s := range j.closed {
		b += s.bytes
	}
	if len(j.closed) < maxClosedSegments && (b < j.cfg.CompactBytes || b < j.snapBytes) {
		return
	}
	j.compacting = true
	segs := append([]segment(nil), j.closed...)
	j.wg.Add(1)
	go func() {
		defer j.wg.Done()
		start := time.Now()
		size, err := j.compact(segs)
		j.smu.Lock()
		j.compacting = false
		if err == nil {
			j.closed = j.closed[len(segs):]
			j.snapBytes = size
			j.compacts++
		}
		j.smu.Unlock()
		if err != nil {
			j.log.Error("journal: compaction failed; the log keeps growing", "err", err)
			return
		}
		j.log.Info("journal compacted", "segments", len(segs), "snapshot-octets", size, "took", time.Since(start))
	}()
}

// compact folds the snapshot and segs (whole, closed segments) into a new
// snapshot and removes segs. It reads from disk only: the live state is the
// AFTR's, and the committer goes on appending to later segments.
func (j *Journal) compact(segs []segment) (int64, error) {
	// Sized for the snapshot's bindings and a quarter more: the segments
	// are mostly renewals of bindings it holds.
	s := newState(j.cfg.MaxBindings, int(j.snapBytes/(headerLen+putLen))*5/4+1024)
	if _, err := os.Lstat(j.path(snapshotName)); err == nil {
		if _, _, err := readSnapshot(j.path(snapshotName), s); err != nil {
			return 0, err
		}
	}
	for _, sg := range segs {
		f, err := openRegular(j.path(segName(sg.seq)), os.O_RDONLY)
		if err != nil {
			return 0, err
		}
		res, err := readRecords(f, logMagic, s.apply)
		f.Close()
		if err == nil {
			err = res.err
		}
		if err != nil {
			return 0, fmt.Errorf("%s: %w", segName(sg.seq), err)
		}
	}
	s.dropExpired(j.cfg.Now())
	size, err := j.writeSnapshot(s, segs[len(segs)-1].seq+1)
	if err != nil {
		return 0, err
	}
	for _, sg := range segs {
		if err := os.Remove(j.path(segName(sg.seq))); err != nil {
			return 0, err
		}
	}
	return size, nil
}

// writeSnapshot writes s as the snapshot holding every segment before
// next: to a temporary file, fsynced, renamed over the old one, and the
// directory fsynced, so that a crash leaves the old snapshot or the new.
func (j *Journal) writeSnapshot(s *state, next uint64) (int64, error) {
	tmp := j.path(snapshotTemp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp) // after a failure; a no-op after the rename
	w := bufio.NewWriterSize(f, 1<<20)
	var buf []byte
	put := func(r *Record) {
		buf = appendRecord(buf[:0], r)
		w.Write(buf)
	}
	w.Write(snapshotMagic[:])
	put(&Record{Kind: kindNext, n: next})
	var n uint64
	if s.epoch != 0 {
		put(&Record{Kind: KindEpoch, Time: time.Unix(0, s.epoch)})
		n++
	}
	for e := range s.each() {
		en := e.Entry()
		put(&Record{Kind: KindPut, Binding: en.Binding, Nonce: en.Nonce})
		n++
	}
	put(&Record{Kind: kindEnd, n: n})
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(tmp)
	if err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, j.path(snapshotName)); err != nil {
		return 0, err
	}
	return fi.Size(), syncDir(j.dir)
}
