package aftr

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"sync"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/aftr/snabbconf"
	"github.com/lw4o6/lw4o6/stack/cfgfile"
)

// Reloading the operator's bindings at runtime (SIGHUP, `lw4o6-aftr
// reload`): the Snabb softwire-config is read again and the difference
// between its binding table and the static bindings installed is applied
// in one step (bindings.Table.ReplaceStatics). Dynamic (PCP) bindings are
// never touched, and static bindings are not journaled: the file is their
// source. The file's other settings shape the data plane built at start;
// a change to them is reported as needing a restart and not applied.

// ReloadExamples is how many bindings of each kind a ReloadResult (and
// its log line) lists.
const ReloadExamples = 5

// ReloadResult says what ReloadStatic changed.
type ReloadResult struct {
	Added, Removed, Changed, Unchanged int
	// FirstAdded, FirstRemoved and FirstChanged are the first
	// ReloadExamples bindings of each kind; an added or changed one is
	// prefixed with its file:line.
	FirstAdded, FirstRemoved, FirstChanged []string
	// NeedsRestart names the file's settings that differ from those read
	// at start (or at the last reload), with both values: not applied.
	NeedsRestart []string
}

// reloadState is the AFTR's memory of its bindings file.
type reloadState struct {
	// mu serialises reloads: the difference is computed against the
	// static bindings installed, which only reloads (and AddStatic) change.
	mu sync.Mutex
	// settings is the file as last read (Config.snabbSettings at start).
	settings *snabbconf.Config
}

// ReloadStatic re-reads the Snabb softwire-config at path and makes the
// AFTR's static bindings those of the file: new ones added, vanished ones
// removed, changed ones (another B4 or BR on a port set) replaced. The
// file is refused whole, the table left as it was, when it does not parse,
// when two of its softwires conflict, or when one conflicts with a live
// dynamic binding; the error names the file and line (ErrConfig wraps the
// conflicts). A softwire without br-address gets the file's
// internal-interface address, else Config.Addr, as at start. Every static
// binding is the file's after a reload: those from Config.Static or
// AddStatic that it lacks are removed too.
func (a *AFTR) ReloadStatic(path string) (ReloadResult, error) {
	a.reload.mu.Lock()
	defer a.reload.mu.Unlock()
	var res ReloadResult

	// Parse, and check the file against itself in a scratch table (the
	// softwires without br-address wait for the file's own address,
	// which may come after the binding table, as in LoadSnabb).
	st := &snabbTable{t: bindings.New(bindings.Config{Now: a.now})}
	ld := snabbLoader{path: path, st: st, brs: map[netip.Addr]struct{}{}}
	lines := map[staticKey]int{}
	var noBR []snabbconf.Softwire
	sc, err := snabbconf.StreamFile(path, func(s snabbconf.Softwire) error {
		lines[keyOfSoftwire(s)] = s.Line
		if !s.BR.IsValid() {
			noBR = append(noBR, s)
			return nil
		}
		return ld.add(s, s.BR)
	})
	if err == nil {
		err = ld.flush()
	}
	if err != nil {
		return res, err
	}
	if n := sc.OutOfRange.Count; n > 0 {
		a.log.Warn("softwires skipped: Snabb loads them but they can match no port",
			"file", path, "count", n, "first-line", sc.OutOfRange.FirstLine, "first", sc.OutOfRange.First)
	}
	scratch := DefaultConfig()
	if err := applySnabbSettings(&scratch, sc); err != nil {
		var se *snabbconf.Error
		if errors.As(err, &se) {
			se.File = path
			if src, rerr := cfgfile.ReadFile(path, MaxSnabbFile); rerr == nil {
				se.Line = leafLine(src, se.Path)
			}
		}
		return res, err
	}
	defaultBR := a.cfg.Addr
	if sc.Internal.IP.IsValid() {
		defaultBR = sc.Internal.IP
	}
	for _, s := range noBR {
		if err := ld.add(s, defaultBR); err != nil {
			return res, err
		}
	}
	if err := ld.flush(); err != nil {
		return res, err
	}

	// The difference, by IPv4 address and port set.
	cur := map[staticKey]bindings.Binding{}
	for _, b := range a.table.Snapshot() {
		if b.Static {
			cur[keyOfBinding(b)] = b
		}
	}
	var add, remove []bindings.Binding
	example := func(list *[]string, b bindings.Binding, withLine bool) {
		if len(*list) >= ReloadExamples {
			return
		}
		s := b.String()
		if withLine {
			s = fmt.Sprintf("%s:%d: %s", path, lines[keyOfBinding(b)], s)
		}
		*list = append(*list, s)
	}
	for _, b := range st.t.Snapshot() {
		k := keyOfBinding(b)
		old, ok := cur[k]
		delete(cur, k)
		switch {
		case !ok:
			res.Added++
			example(&res.FirstAdded, b, true)
			add = append(add, b)
		case old.B4 != b.B4 || old.BR != b.BR:
			res.Changed++
			example(&res.FirstChanged, b, true)
			remove = append(remove, old)
			add = append(add, b)
		default:
			res.Unchanged++
		}
	}
	for _, b := range a.table.Snapshot() { // in table order, for the examples
		if _, gone := cur[keyOfBinding(b)]; gone && b.Static {
			res.Removed++
			example(&res.FirstRemoved, b, false)
			remove = append(remove, b)
		}
	}
	if i, err := a.table.ReplaceStatics(remove, add); err != nil {
		if i >= len(remove) {
			b := add[i-len(remove)]
			return ReloadResult{}, fmt.Errorf("%s:%d: %w: static binding %v: %w", path, lines[keyOfBinding(b)], ErrConfig, b, err)
		}
		return ReloadResult{}, fmt.Errorf("%s: %w: removing static binding %v: %w", path, ErrConfig, remove[i], err)
	}
	// New BR addresses become the AFTR's; those no binding uses any more
	// stay (answering on an address is harmless, and a B4 still using
	// it gets the binding-failure answer rather than silence).
	a.addAddrs(st.brs...)

	if old := a.reload.settings; old != nil {
		res.NeedsRestart = settingsDiff(old, sc)
	}
	a.reload.settings = sc

	if res.Added+res.Removed+res.Changed == 0 {
		a.log.Info("static bindings reloaded: no change", "file", path, "static", res.Unchanged)
	} else {
		a.log.Info("static bindings reloaded", "file", path, "added", res.Added, "removed", res.Removed,
			"changed", res.Changed, "unchanged", res.Unchanged,
			"first-added", res.FirstAdded, "first-removed", res.FirstRemoved, "first-changed", res.FirstChanged)
	}
	for _, s := range res.NeedsRestart {
		a.log.Warn("setting changed in the bindings file needs a restart; not applied", "file", path, "setting", s)
	}
	return res, nil
}

// staticKey names a static binding's place: IPv4 address and port set.
type staticKey struct {
	ip   netip.Addr
	a, k uint8
	psid uint16
}

func keyOfBinding(b bindings.Binding) staticKey {
	return staticKey{b.IPv4.Unmap(), b.PSID.Offset, b.PSID.Length, b.PSID.ID}
}

func keyOfSoftwire(s snabbconf.Softwire) staticKey {
	return staticKey{s.IPv4.Unmap(), s.PortSet.Offset, s.PortSet.Length, s.PortSet.ID}
}

// settingsDiff lists the interface and instance settings that differ
// between two readings of a file, as "path: old -> new".
func settingsDiff(old, cur *snabbconf.Config) []string {
	var out []string
	for _, side := range []struct {
		name     string
		old, cur snabbconf.Interface
	}{{"internal-interface", old.Internal, cur.Internal}, {"external-interface", old.External, cur.External}} {
		ov, cv := reflect.ValueOf(side.old), reflect.ValueOf(side.cur)
		for i := range ov.NumField() {
			if !reflect.DeepEqual(ov.Field(i).Interface(), cv.Field(i).Interface()) {
				out = append(out, fmt.Sprintf("%s %s: %v -> %v", side.name, ov.Type().Field(i).Name, ov.Field(i).Interface(), cv.Field(i).Interface()))
			}
		}
	}
	if !reflect.DeepEqual(stripLines(old.Instances), stripLines(cur.Instances)) {
		out = append(out, "instance: devices or queues changed")
	}
	return out
}

// stripLines copies instances without their line numbers: moving a block
// in the file changes nothing.
func stripLines(in []snabbconf.Instance) []snabbconf.Instance {
	out := make([]snabbconf.Instance, len(in))
	for i, x := range in {
		x.Line = 0
		x.Queues = append([]snabbconf.Queue(nil), x.Queues...)
		for j := range x.Queues {
			x.Queues[j].Line = 0
		}
		out[i] = x
	}
	return out
}
