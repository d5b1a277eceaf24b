package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/stack/portset"
)

var (
	tBR    = netip.MustParseAddr("2001:db8::1")
	tStart = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// logs collects the journal's log records.
type logs struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.recs = append(l.recs, r)
	l.mu.Unlock()
	return nil
}
func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }

func (l *logs) atLeast(level slog.Level) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		if r.Level >= level {
			out = append(out, r.Message)
		}
	}
	return out
}

func b4(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 1, 0, 0, 0, 0, 0, 0, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)})
}

// put is B4 i's binding: address 192.0.2.(i/31), 2048-port block i%31+1.
func put(i int, exp time.Time) Record {
	return Record{
		Kind: KindPut,
		Binding: bindings.Binding{
			B4:      b4(i),
			IPv4:    netip.AddrFrom4([4]byte{198, 18, byte(i / 31 >> 8), byte(i / 31)}),
			PSID:    portset.PSID{Length: 5, ID: uint16(i%31 + 1)},
			BR:      tBR,
			Expires: exp,
		},
		Nonce: [12]byte{byte(i), byte(i >> 8), byte(i >> 16), 7},
	}
}

func del(i int) Record { return Record{Kind: KindDelete, Binding: bindings.Binding{B4: b4(i)}} }

type rig struct {
	t     *testing.T
	dir   string
	clock *clock
	logs  *logs
	cfg   Config
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, dir: t.TempDir(), clock: &clock{t: tStart}, logs: &logs{}}
	r.cfg = Config{Dir: r.dir, Now: r.clock.Now, Logger: slog.New(r.logs)}
	return r
}

func (r *rig) open() (*Journal, *State) {
	r.t.Helper()
	j, st, err := Open(r.cfg)
	if err != nil {
		r.t.Fatalf("Open: %v", err)
	}
	r.t.Cleanup(func() { j.Close() })
	return j, st
}

// appendAll appends recs and waits until each one's callback says durable.
func appendAll(t *testing.T, j *Journal, recs ...Record) {
	t.Helper()
	errs := make(chan error, len(recs))
	for _, rec := range recs {
		if err := j.Append(rec, func(err error) { errs <- err }); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	for range recs {
		if err := <-errs; err != nil {
			t.Fatalf("durable: %v", err)
		}
	}
}

func entries(st *State) map[netip.Addr]Entry {
	m := map[netip.Addr]Entry{}
	for e := range st.Bindings() {
		m[e.Binding.B4] = e
	}
	return m
}

// want checks that st holds exactly B4s ids, each with put(id)'s binding.
func want(t *testing.T, st *State, exp time.Time, ids ...int) {
	t.Helper()
	got := entries(st)
	if len(got) != len(ids) {
		t.Errorf("%d bindings replayed, want %d", len(got), len(ids))
	}
	for _, i := range ids {
		w := put(i, exp)
		e, ok := got[b4(i)]
		switch {
		case !ok:
			t.Errorf("binding of %v missing", b4(i))
		case e.Binding.IPv4 != w.Binding.IPv4 || e.Binding.PSID != w.Binding.PSID || e.Binding.BR != tBR ||
			!e.Binding.Expires.Equal(w.Binding.Expires) || e.Binding.Static || e.Nonce != w.Nonce:
			t.Errorf("binding of %v: %+v nonce %x, want %+v nonce %x", b4(i), e.Binding, e.Nonce, w.Binding, w.Nonce)
		}
	}
}

func ids(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// Install, renew, delete and the Epoch survive a close and reopen.
func TestRoundTrip(t *testing.T) {
	r := newRig(t)
	j, st := r.open()
	if st.Found || st.Records != 0 || st.Lost != nil {
		t.Fatalf("fresh journal: %+v", st)
	}
	exp := tStart.Add(time.Hour)
	epoch := tStart.Add(-time.Minute)
	appendAll(t, j, Record{Kind: KindEpoch, Time: epoch})
	for i := range 10 {
		appendAll(t, j, put(i, tStart.Add(time.Minute)))
	}
	for i := range 10 {
		appendAll(t, j, put(i, exp)) // renewals
	}
	appendAll(t, j, del(3), del(42))
	st0 := Record{Kind: KindPut, Binding: bindings.Binding{B4: b4(100), IPv4: netip.MustParseAddr("192.0.2.9"),
		PSID: portset.PSID{Offset: 6, Length: 6, ID: 5}, BR: tBR, Static: true}}
	appendAll(t, j, st0)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	_, st = r.open()
	if !st.Found || !st.EpochStart.Equal(epoch) || st.Records != 24 || st.Live != 10 {
		t.Errorf("replayed %+v, want found, epoch %v, 24 records, 10 live", st, epoch)
	}
	got := entries(st)
	if s, ok := got[b4(100)]; !ok || !s.Binding.Static || s.Binding.PSID != st0.Binding.PSID || !s.Binding.Expires.IsZero() {
		t.Errorf("static binding replayed as %+v", s)
	}
	delete(got, b4(100))
	want(t, &State{s: stateOf(got)}, exp, 0, 1, 2, 4, 5, 6, 7, 8, 9)
}

// stateOf builds a state from entries, for want.
func stateOf(m map[netip.Addr]Entry) *state {
	s := newState(1<<20, 0)
	for _, e := range m {
		s.apply(&Record{Kind: KindPut, Binding: e.Binding, Nonce: e.Nonce})
	}
	return s
}

// Bindings past their lifetime at replay, or swept (an expiry mark) even if
// the clock went back since, are dropped.
func TestExpiredDropped(t *testing.T) {
	r := newRig(t)
	j, _ := r.open()
	appendAll(t, j, put(0, tStart.Add(time.Minute)), put(1, tStart.Add(2*time.Hour)), put(2, tStart.Add(30*time.Minute)))
	appendAll(t, j, Record{Kind: KindExpire, Time: tStart.Add(40 * time.Minute)})
	appendAll(t, j, put(3, tStart.Add(35*time.Minute))) // after the mark: not swept by it
	j.Close()

	r.clock.Set(tStart.Add(10 * time.Minute)) // the clock stepped back after the sweep
	_, st := r.open()
	if st.Expired != 2 {
		t.Errorf("%d expired, want 2 (one past its lifetime, one swept)", st.Expired)
	}
	got := entries(st)
	if _, ok := got[b4(1)]; !ok || len(got) != 2 {
		t.Errorf("replayed %v, want B4s 1 and 3", got)
	}
	if _, ok := got[b4(3)]; !ok {
		t.Errorf("binding recorded after the expiry mark dropped")
	}
}

// Compaction keeps the journal bounded under renewals and loses nothing.
func TestCompaction(t *testing.T) {
	r := newRig(t)
	r.cfg.SegmentBytes = 4 << 10
	r.cfg.CompactBytes = 16 << 10
	j, _ := r.open()
	exp := tStart.Add(time.Hour)
	appendAll(t, j, Record{Kind: KindEpoch, Time: tStart})
	for round := range 40 {
		recs := make([]Record, 50)
		for i := range recs {
			recs[i] = put(i, exp.Add(time.Duration(round)*time.Second))
		}
		appendAll(t, j, recs...)
	}
	deadline := time.Now().Add(30 * time.Second)
	for j.Stats().Compactions == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no compaction: %+v", j.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	appendAll(t, j, del(7))
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	var total int64
	des, _ := os.ReadDir(r.dir)
	for _, de := range des {
		fi, _ := de.Info()
		total += fi.Size()
	}
	// 2000 records of 70 octets were written; the live state is 50.
	if total > 40<<10 {
		t.Errorf("journal holds %d octets after compaction (%d files)", total, len(des))
	}
	_, st := r.open()
	if !st.EpochStart.Equal(tStart) {
		t.Errorf("epoch start %v after compaction, want %v", st.EpochStart, tStart)
	}
	got := entries(st)
	if len(got) != 49 {
		t.Errorf("%d bindings after compaction, want 49", len(got))
	}
	for i := range 50 {
		e, ok := got[b4(i)]
		if i == 7 {
			if ok {
				t.Errorf("deleted binding back")
			}
			continue
		}
		if !ok || !e.Binding.Expires.Equal(exp.Add(39*time.Second)) {
			t.Errorf("B4 %d: %+v, want the last renewal", i, e)
		}
	}
}

// lastSegment returns the path of the highest log segment.
func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, logPrefix+"*"))
	var last string
	for _, p := range m {
		if !strings.HasSuffix(p, ".bad") && p > last {
			last = p
		}
	}
	if last == "" {
		t.Fatal("no segment")
	}
	return last
}

func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	des, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(from, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, de.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// A record torn at any octet is cut, with one log line, and every record
// before it is kept; the cut is durable (a second open finds nothing to cut).
func TestTornTailEveryOffset(t *testing.T) {
	r := newRig(t)
	j, _ := r.open()
	exp := tStart.Add(time.Hour)
	for i := range 5 {
		appendAll(t, j, put(i, exp))
	}
	j.Close()
	seg := lastSegment(t, r.dir)
	fi, _ := os.Stat(seg)
	size := fi.Size()
	last := size - headerLen - putLen
	for cut := last; cut < size; cut++ {
		t.Run(fmt.Sprint(cut-last), func(t *testing.T) {
			r2 := newRig(t)
			r2.cfg.Dir = copyDir(t, r.dir)
			if err := os.Truncate(filepath.Join(r2.cfg.Dir, filepath.Base(seg)), cut); err != nil {
				t.Fatal(err)
			}
			j2, st := r2.open()
			want(t, st, exp, 0, 1, 2, 3)
			wantLines := 1
			if cut == last {
				wantLines = 0 // a clean end at a record boundary
			}
			if n := len(r2.logs.atLeast(slog.LevelWarn)); n != wantLines {
				t.Errorf("%d warning lines, want %d: %v", n, wantLines, r2.logs.atLeast(slog.LevelWarn))
			}
			if st.Truncated != cut-last {
				t.Errorf("truncated %d octets, want %d", st.Truncated, cut-last)
			}
			j2.Close()
			r3 := newRig(t)
			r3.cfg.Dir = r2.cfg.Dir
			_, st = r3.open()
			want(t, st, exp, 0, 1, 2, 3)
			if st.Truncated != 0 || len(r3.logs.atLeast(slog.LevelWarn)) != 0 {
				t.Errorf("second open cut %d octets again", st.Truncated)
			}
		})
	}
}

// A bad CRC in the middle stops replay there, with one log line; the
// records before it are kept, the segment is truncated, and later
// segments are set aside.
func TestCorruptMiddle(t *testing.T) {
	r := newRig(t)
	j, _ := r.open()
	exp := tStart.Add(time.Hour)
	for i := range 10 {
		appendAll(t, j, put(i, exp))
	}
	j.Close()
	seg := lastSegment(t, r.dir)
	j, _ = r.open() // a second segment
	appendAll(t, j, put(20, exp))
	j.Close()

	b, _ := os.ReadFile(seg)
	off := len(logMagic) + 4*(headerLen+putLen) + headerLen + 20 // inside record 4's payload
	b[off] ^= 0x40
	os.WriteFile(seg, b, 0o600)

	r2 := newRig(t)
	r2.cfg.Dir = r.dir
	_, st := r2.open()
	want(t, st, exp, 0, 1, 2, 3)
	lines := r2.logs.atLeast(slog.LevelWarn)
	if len(lines) == 0 || !strings.Contains(lines[0], "truncated") {
		t.Errorf("log lines %v, want one about the truncation", lines)
	}
	if fi, _ := os.Stat(seg); fi.Size() != int64(len(logMagic)+4*(headerLen+putLen)) {
		t.Errorf("segment is %d octets after the cut", fi.Size())
	}
	if m, _ := filepath.Glob(filepath.Join(r.dir, "*.bad")); len(m) != 1 {
		t.Errorf("set aside: %v, want the later segment", m)
	}
}

// A snapshot that cannot be read is state lost: set aside, reported, not
// Found.
func TestCorruptSnapshotIsLost(t *testing.T) {
	r := newRig(t)
	r.cfg.SegmentBytes, r.cfg.CompactBytes = 1<<10, 1<<10
	j, _ := r.open()
	for i := range 100 {
		appendAll(t, j, put(i, tStart.Add(time.Hour)))
	}
	deadline := time.Now().Add(30 * time.Second)
	for j.Stats().Compactions == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	j.Close()
	p := filepath.Join(r.dir, snapshotName)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	os.WriteFile(p, b, 0o600)
	r2 := newRig(t)
	r2.cfg.Dir = r.dir
	_, st := r2.open()
	if st.Found || st.Lost == nil || len(entries(st)) != 0 {
		t.Errorf("corrupt snapshot replayed as %+v", st)
	}
	if len(r2.logs.atLeast(slog.LevelError)) != 1 {
		t.Errorf("log: %v", r2.logs.atLeast(slog.LevelWarn))
	}
	if _, err := os.Stat(p + ".bad"); err != nil {
		t.Errorf("snapshot not set aside: %v", err)
	}
}

// Journal files that are not regular files are refused with a clear error.
func TestNonRegularRefused(t *testing.T) {
	for _, mk := range []struct {
		name string
		make func(dir string) error
	}{
		{"dir-as-snapshot", func(dir string) error { return os.Mkdir(filepath.Join(dir, snapshotName), 0o700) }},
		{"symlink-as-segment", func(dir string) error {
			return os.Symlink("/dev/zero", filepath.Join(dir, segName(1)))
		}},
	} {
		t.Run(mk.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := mk.make(dir); err != nil {
				t.Skipf("cannot make it here: %v", err)
			}
			_, _, err := Open(Config{Dir: dir})
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("Open = %v, want a not-a-regular-file error", err)
			}
		})
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	if _, _, err := Open(Config{Dir: f}); err == nil {
		t.Errorf("Open on a file as directory succeeded")
	}
}

// The pending queue is bounded: past MaxPending, Append and Barrier fail
// with ErrFull (counted) and nothing is appended; once the committer
// drains, appends succeed again and all accepted records are durable.
func TestBoundedQueue(t *testing.T) {
	r := newRig(t)
	r.cfg.MaxPending = 8
	j, _ := r.open()
	release := make(chan struct{})
	entered := make(chan struct{})
	if err := j.Append(put(0, tStart.Add(time.Hour)), func(error) { close(entered); <-release }); err != nil {
		t.Fatal(err)
	}
	<-entered // the committer is held inside batch 1's callback
	for i := 1; i <= 8; i++ {
		if err := j.Append(put(i, tStart.Add(time.Hour)), nil); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	if err := j.Append(put(9, tStart.Add(time.Hour)), nil); !errors.Is(err, ErrFull) {
		t.Errorf("append past the bound: %v, want ErrFull", err)
	}
	if err := j.Ready(); !errors.Is(err, ErrFull) {
		t.Errorf("Ready at the bound: %v", err)
	}
	for range 8 {
		if err := j.Barrier(func(error) {}); err != nil {
			t.Fatalf("barrier: %v", err)
		}
	}
	if err := j.Barrier(func(error) {}); !errors.Is(err, ErrFull) {
		t.Errorf("barrier past the bound: %v, want ErrFull", err)
	}
	if n := j.Stats().Full; n != 3 {
		t.Errorf("Full = %d, want 3", n)
	}
	close(release)
	deadline := time.Now().Add(30 * time.Second)
	for err := j.Sync(); err != nil; err = j.Sync() {
		if !errors.Is(err, ErrFull) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	appendAll(t, j, put(9, tStart.Add(time.Hour)))
	j.Close()
	_, st := r.open()
	want(t, st, tStart.Add(time.Hour), ids(10)...)
}

// Kill discards what was not written: those callbacks never run, and what
// was durable before is replayed.
func TestKill(t *testing.T) {
	r := newRig(t)
	j, _ := r.open()
	appendAll(t, j, put(0, tStart.Add(time.Hour)))
	release := make(chan struct{})
	entered := make(chan struct{})
	j.Append(put(1, tStart.Add(time.Hour)), func(error) { close(entered); <-release })
	<-entered
	ran := make(chan struct{}, 1)
	j.Append(put(2, tStart.Add(time.Hour)), func(error) { ran <- struct{}{} })
	go func() { time.Sleep(10 * time.Millisecond); close(release) }()
	j.Kill()
	select {
	case <-ran:
		t.Errorf("callback of a discarded record ran")
	default:
	}
	if err := j.Append(put(3, tStart), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("append after Kill: %v", err)
	}
	_, st := r.open()
	want(t, st, tStart.Add(time.Hour), 0, 1)
}

// A write error fails the journal for good: the callback gets the error.
func TestFailedWrite(t *testing.T) {
	r := newRig(t)
	j, _ := r.open()
	j.f.Close() // the next write fails
	err := j.Sync()
	if err != nil {
		t.Fatalf("barrier without records: %v", err)
	}
	errs := make(chan error, 1)
	j.Append(put(0, tStart), func(err error) { errs <- err })
	if err := <-errs; err == nil {
		t.Fatal("record durable on a closed file")
	}
	if err := j.Append(put(1, tStart), nil); err == nil {
		t.Error("append after a failed write succeeded")
	}
}

func TestEncodeDecode(t *testing.T) {
	for _, r := range []Record{put(5, tStart), del(5), {Kind: KindExpire, Time: tStart}, {Kind: KindEpoch, Time: tStart}} {
		b := appendRecord(nil, &r)
		var got Record
		n, err := payloadLen(b)
		if err != nil || n != len(b)-headerLen {
			t.Fatalf("%v: length %d %v", r.Kind, n, err)
		}
		if err := decodeRecord(b[:headerLen], b[headerLen:], &got); err != nil {
			t.Fatalf("%v: %v", r.Kind, err)
		}
		if !bytes.Equal(appendRecord(nil, &got), b) {
			t.Errorf("%v: round trip differs", r.Kind)
		}
	}
}
