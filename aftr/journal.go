package aftr

import (
	"net/netip"
	"time"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/aftr/journal"
	"github.com/lw4o6/lw4o6/stack/pcp"
)

// The binding journal (Config.StateDir): every change of a dynamic binding
// is appended, and a PCP answer leaves only once the change it reports is
// durable (PROTOCOL.md §8.6), so a restart loses no binding a B4 was told
// about and the PCP Epoch continues (RFC 6887 §8.5). Static bindings are
// the operator's configuration and are not journaled.

// openJournal opens the journal in StateDir and restores its bindings and
// their nonces into the table; it returns the Epoch start to continue
// (zero when state was lost or there was none).
func (a *AFTR) openJournal() (time.Time, error) {
	start := time.Now()
	j, st, err := journal.Open(journal.Config{Dir: a.cfg.StateDir, Now: a.now, Logger: a.log})
	if err != nil {
		return time.Time{}, err
	}
	a.journal = j
	restored, skipped := 0, 0
	a.table.Grow(st.Live)
	for e := range st.Bindings() {
		if e.Binding.Static {
			continue // the configuration says which static bindings exist
		}
		if err := a.table.Restore(e.Binding); err != nil {
			a.log.Warn("journal: binding not restored", "binding", e.Binding, "err", err)
			skipped++
			continue
		}
		if e.Nonce != ([12]byte{}) { // none: installed by a provisioning system
			a.nonces[e.Binding.B4] = e.Nonce
		}
		restored++
	}
	st.Release()
	a.restored = st.Found && st.Lost == nil
	args := []any{"dir", a.cfg.StateDir, "bindings", restored, "records", st.Records,
		"expired", st.Expired, "skipped", skipped, "truncated-octets", st.Truncated, "took", time.Since(start)}
	switch {
	case st.Lost != nil:
		a.log.Error("journal unreadable: binding state lost", append(args, "err", st.Lost)...)
		return time.Time{}, nil
	case !a.restored:
		a.log.Warn("journal empty or missing: no binding state to restore", args...)
		return time.Time{}, nil
	}
	a.log.Info("journal replayed", args...)
	return st.EpochStart, nil
}

// journalEpoch records the PCP Epoch start, durably, before any answer
// carries an Epoch from it.
func (a *AFTR) journalEpoch() error {
	if a.journal == nil {
		return nil
	}
	if err := a.journal.Append(journal.Record{Kind: journal.KindEpoch, Time: a.pcp.EpochStart()}, nil); err != nil {
		return err
	}
	return a.journal.Sync()
}

// Restored reports whether New found a journal in StateDir and replayed
// it: no state was lost. False without StateDir, or when the journal was
// missing, empty or unreadable (the PCP Epoch then starts at 0).
func (a *AFTR) Restored() bool { return a.restored }

// Close writes what the journal holds pending and closes it. The AFTR
// must not be used after.
func (a *AFTR) Close() error {
	if a.journal == nil {
		return nil
	}
	return a.journal.Close()
}

// pcpCall is the client identity toSelf4 passes through pcp.Server.Handle
// to Map: the B4's address, and whether Map could not journal the change
// it made, in which case no answer may leave (the B4 retransmits, RFC 6887
// §8.1.1).
type pcpCall struct {
	b4          netip.Addr
	unjournaled bool
	granted     pcp.PortSet // the answer's PORT_SET (grantedSet)
}

// clientAddr is the IPv6 address of a PCP client identity.
func clientAddr(c any) (netip.Addr, bool) {
	switch c := c.(type) {
	case netip.Addr:
		return c, true
	case *pcpCall:
		return c.b4, true
	}
	return netip.Addr{}, false
}

// journalReady reports whether a change for r can be journaled; if not,
// the request gets no answer. Called under a.mu before the change, so that
// (with the expiry marks the only other appender) the append after it
// succeeds.
func (a *AFTR) journalReady(r any) bool {
	if a.journal == nil {
		return true
	}
	if err := a.journal.Ready(); err != nil {
		a.unjournaled(r, err)
		return false
	}
	return true
}

func (a *AFTR) unjournaled(r any, err error) {
	a.log.Debug("journal: PCP request not answered", "err", err)
	if c, ok := r.(*pcpCall); ok {
		c.unjournaled = true
	}
}

// journalPut records b4's binding b with its mapping nonce.
func (a *AFTR) journalPut(client any, b bindings.Binding, nonce [12]byte) {
	if a.journal == nil || b.Static {
		return
	}
	if err := a.journal.Append(journal.Record{Kind: journal.KindPut, Binding: b, Nonce: nonce}, nil); err != nil {
		a.unjournaled(client, err)
	}
}

// journalDelete records that b4's dynamic binding is gone.
func (a *AFTR) journalDelete(client any, b4 netip.Addr, set uint16) {
	if a.journal == nil {
		return
	}
	if err := a.journal.Append(journal.Record{Kind: journal.KindDelete, Binding: bindings.Binding{B4: b4, Set: set}}, nil); err != nil {
		a.unjournaled(client, err)
		if client == nil {
			a.log.Warn("journal: binding removal not journaled; it returns after a restart until it expires", "b4", b4, "err", err)
		}
	}
}

// journalExpire records a sweep at t; nothing waits for it (replay also
// drops bindings by their own expiry).
func (a *AFTR) journalExpire(t time.Time) {
	if a.journal != nil {
		a.journal.Append(journal.Record{Kind: journal.KindExpire, Time: t}, nil)
	}
}

// answerPCP sends a PCP answer to a B4: at once without a journal, else
// from the journal's committer once every change appended before it —
// the one this answer reports included — is durable. The data path never
// waits for an fsync; out is the AFTR's own buffer, in pb when pb is not
// nil, which goes back to its pool once out is sent or dropped.
func (a *AFTR) answerPCP(out []byte, pb *pcpBuf) {
	if a.journal == nil {
		a.count.Count(cOutPCP, len(out))
		a.sendAccess(out)
		pb.release()
		return
	}
	err := a.journal.Barrier(func(err error) {
		defer pb.release()
		if err != nil {
			a.count.Count(cDropPCPUnjournaled, len(out))
			return
		}
		a.count.Count(cOutPCP, len(out))
		a.sendAccess(out)
	})
	if err != nil {
		a.count.Count(cDropPCPUnjournaled, len(out))
		pb.release()
	}
}
