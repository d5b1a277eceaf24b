package aftr

import (
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
)

var tBigPool = netip.MustParsePrefix("198.18.0.0/22") // RFC 2544 benchmark range

// journalRig is an AFTR journaling in dir, on clock.
func journalRig(t testing.TB, dir string, clock *fakeClock) *rig {
	t.Helper()
	r := &rig{t: t, access: &fakeLink{}, internet: &fakeLink{}, clock: clock}
	cfg := testConfig()
	cfg.Pools = []netip.Prefix{tBigPool}
	cfg.Now = clock.Now
	cfg.StateDir = dir
	a, err := New(cfg, r.access, r.internet)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	r.a, r.cfg = a, cfg
	return r
}

// burstB4 is B4 number i of a burst, one per subscriber /48.
func burstB4(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 8), byte(i), 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
}

// answers waits until the access link has carried n packets (the journal
// sends answers from its committer) and returns them.
func (r *rig) answers(n int) [][]byte {
	r.t.Helper()
	var got [][]byte
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < n {
		got = append(got, r.access.take()...)
		if len(got) >= n {
			break
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d answers, want %d: %v", len(got), n, r.a.Counters())
		}
		time.Sleep(time.Millisecond)
	}
	return got
}

// answerTo is the B4 an answer goes to.
func answerTo(t testing.TB, b []byte) netip.Addr {
	var outer packet.IPv6
	if _, err := packet.Decapsulate(b, &outer); err != nil {
		t.Fatalf("answer is not a softwire packet: %v", err)
	}
	return outer.DstAddr()
}

type grant struct {
	ip          netip.Addr
	first, size uint16
}

// A "kill -9" of the AFTR in the middle of a burst of PCP allocations from
// many B4s at once: a new AFTR on the same StateDir has every binding whose
// answer was sent, with the same address and ports, continues the Epoch
// (RFC 6887 §8.5), and renews a binding for the same B4 and nonce
// (RFC 6887 §11.3) with the same set, refusing another nonce.
func TestJournalKillMidBurst(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	r := journalRig(t, dir, clock)
	if r.a.Restored() {
		t.Fatal("Restored on an empty state directory")
	}
	clock.Advance(100 * time.Second)

	const workers, each = 8, 250
	var sent atomic.Int64
	killed := make(chan struct{})
	var epochAtKill uint32
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				n := w*each + i
				r.a.FromAccess(pcpPacket(burstB4(n), b4Req(byte(n), 3600).marshal(t)))
				if sent.Add(1) == workers*each/2 {
					epochAtKill = r.a.Epoch()
					r.a.journal.Kill() // the process dies: nothing pending is written
					close(killed)
				}
			}
		}()
	}
	wg.Wait()
	<-killed
	got := map[netip.Addr]grant{}
	for _, b := range r.access.take() {
		b4 := answerTo(t, b)
		ip, first, size := granted(t, r.pcpReply(b4, b))
		got[b4] = grant{ip, first, size}
	}
	if len(got) == 0 {
		t.Fatal("no answer before the kill")
	}
	if r.counter("drop-unjournaled-pcp") == 0 {
		t.Errorf("no request refused after the kill: %v", r.a.Counters())
	}
	t.Logf("%d requests, %d answered before the kill, %d bindings in the dead AFTR's table",
		workers*each, len(got), len(r.a.Bindings()))

	clock.Advance(30 * time.Second)
	r2 := journalRig(t, dir, clock)
	defer r2.a.Close()
	if !r2.a.Restored() {
		t.Fatal("Restored() false after a restart with the journal")
	}
	if e := r2.a.Epoch(); e != epochAtKill+30 {
		t.Errorf("Epoch %d after the restart, want %d (continued, not reset)", e, epochAtKill+30)
	}
	for b4, g := range got {
		b, ok := r2.binding(b4)
		if !ok {
			t.Errorf("answered binding of %v lost", b4)
			continue
		}
		if b.ip != g.ip || b.first != g.first || b.size != uint32(g.size) {
			t.Errorf("%v restored as %v %d+%d, was answered %v %d+%d", b4, b.ip, b.first, b.size, g.ip, g.first, g.size)
		}
	}

	var b4 netip.Addr
	var n int
	for i := range workers * each {
		if _, ok := got[burstB4(i)]; ok {
			b4, n = burstB4(i), i
			break
		}
	}
	r2.a.FromAccess(pcpPacket(b4, b4Req(byte(n), 3600).marshal(t)))
	m := r2.pcpReply(b4, r2.answers(1)[0])
	ip, first, size := granted(t, m)
	if (grant{ip, first, size}) != got[b4] {
		t.Errorf("renewal after restart granted %v %d+%d, want %v", ip, first, size, got[b4])
	}
	if m.Epoch != epochAtKill+30 {
		t.Errorf("answer Epoch %d, want %d", m.Epoch, epochAtKill+30)
	}
	other := b4Req(byte(n), 3600)
	other.nonce = nonce(byte(n) + 1)
	r2.a.FromAccess(pcpPacket(b4, other.marshal(t)))
	if m := r2.pcpReply(b4, r2.answers(1)[0]); m.Result != pcp.NotAuthorized {
		t.Errorf("another nonce after restart: %v, want NOT_AUTHORIZED (RFC 6887 §11.3)", m.Result)
	}
}

// A journal that is gone (deleted, or a new directory) is state lost:
// Restored() is false, the Epoch starts at 0, no binding comes back.
func TestJournalDeletedNotRestored(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	clock := newClock()
	r := journalRig(t, dir, clock)
	r.a.FromAccess(pcpPacket(tB4A, b4Req(1, 3600).marshal(t)))
	granted(t, r.pcpReply(tB4A, r.answers(1)[0]))
	clock.Advance(time.Hour / 2)
	if err := r.a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	r2 := journalRig(t, dir, clock)
	defer r2.a.Close()
	if r2.a.Restored() {
		t.Error("Restored() true with the journal deleted")
	}
	if e := r2.a.Epoch(); e != 0 {
		t.Errorf("Epoch %d, want 0 after state loss (RFC 6887 §8.5)", e)
	}
	if n := len(r2.a.Bindings()); n != 0 {
		t.Errorf("%d bindings with no journal", n)
	}
	// Without StateDir there is nothing to restore either.
	if newRig(t, nil).a.Restored() {
		t.Error("Restored() true without StateDir")
	}
}

// PCP deletes and operator removals are journaled too; a clean Close and
// restart keeps the rest, with the Epoch continuing.
func TestJournalDeleteAndRemove(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	r := journalRig(t, dir, clock)
	for i, b4 := range []netip.Addr{tB4A, tB4B, tB4C} {
		r.a.FromAccess(pcpPacket(b4, b4Req(byte(i), 3600).marshal(t)))
		granted(t, r.pcpReply(b4, r.answers(1)[0]))
	}
	r.a.FromAccess(pcpPacket(tB4A, b4Req(0, 0).marshal(t)))
	if m := r.pcpReply(tB4A, r.answers(1)[0]); m.Result != pcp.Success {
		t.Fatalf("delete: %v", m.Result)
	}
	if !r.a.RemoveBinding(tB4B) {
		t.Fatal("RemoveBinding found nothing")
	}
	clock.Advance(10 * time.Second)
	e := r.a.Epoch()
	if err := r.a.Close(); err != nil {
		t.Fatal(err)
	}
	r2 := journalRig(t, dir, clock)
	defer r2.a.Close()
	bs := r2.a.Bindings()
	if len(bs) != 1 || bs[0].B4 != tB4C {
		t.Errorf("restored %v, want only %v's", bs, tB4C)
	}
	if !r2.a.Restored() || r2.a.Epoch() != e {
		t.Errorf("Restored %v Epoch %d, want true and %d", r2.a.Restored(), r2.a.Epoch(), e)
	}
}

// When a change cannot be journaled, no answer leaves and nothing changes:
// the request is counted and the B4 retransmits.
func TestJournalUnavailableNoAnswer(t *testing.T) {
	r := journalRig(t, t.TempDir(), newClock())
	r.a.journal.Kill()
	r.a.FromAccess(pcpPacket(tB4A, b4Req(1, 3600).marshal(t)))
	if p := r.access.take(); len(p) != 0 {
		t.Errorf("answer sent without a journal: %d packets", len(p))
	}
	if n := r.counter("drop-unjournaled-pcp"); n != 1 {
		t.Errorf("drop-unjournaled-pcp = %d, want 1: %v", n, r.a.Counters())
	}
	if len(r.a.Bindings()) != 0 {
		t.Errorf("binding installed without being journaled")
	}
}

// A StateDir that cannot be a directory is a configuration error.
func TestJournalBadStateDir(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	cfg := testConfig()
	cfg.StateDir = f
	if _, err := New(cfg, discard{}, discard{}); err == nil {
		t.Error("New with a file as StateDir succeeded")
	} else {
		t.Log(err)
	}
}

// A binding a provisioning system installed (THIRD_PARTY over plain IPv6)
// is journaled before its answer leaves and without the provisioning
// system's nonce: after a restart the B4 still renews it with its own.
func TestJournalProvisionedBinding(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	r := journalRig(t, dir, clock)
	r.a.FromAccess(provPacket(t, tProv, thirdParty(tB4B, 9, 3600)))
	var o packet.IPv6
	if err := packet.ParseIPv6(r.answers(1)[0], &o); err != nil {
		t.Fatal(err)
	}
	var u packet.UDP
	if err := packet.ParseUDP6(&o, &u); err != nil {
		t.Fatal(err)
	}
	m, err := pcp.Parse(u.Data)
	if err != nil {
		t.Fatal(err)
	}
	ip, first, _ := granted(t, m)
	r.a.journal.Kill()
	r2 := journalRig(t, dir, clock)
	defer r2.a.Close()
	r2.a.FromAccess(pcpPacket(tB4B, b4Req(1, 3600).marshal(t)))
	m2 := r2.pcpReply(tB4B, r2.answers(1)[0])
	if ip2, first2, _ := granted(t, m2); ip2 != ip || first2 != first {
		t.Errorf("the B4's renewal after the restart got %v:%d, want %v:%d", ip2, first2, ip, first)
	}
}

// docs/port-sets.md: each of a B4's sets is its own journal entry. After a
// restart both sets are back; after a delete of set 2 and a restart, only
// set 0 is.
func TestJournalSets(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	r := journalRig(t, dir, clock)
	r.a.FromAccess(pcpPacket(tB4A, b4Req(1, 3600).marshal(t)))
	ip, first, _ := granted(t, r.pcpReply(tB4A, r.answers(1)[0]))
	r.a.FromAccess(pcpPacket(tB4A, setReq(1, 2).marshal(t)))
	ip2, first2, _ := granted(t, r.pcpReply(tB4A, r.answers(1)[0]))
	r.a.journal.Kill()

	r2 := journalRig(t, dir, clock)
	got := map[uint16]uint16{}
	for _, b := range r2.a.Bindings() {
		if b.IPv4 != ip && b.IPv4 != ip2 {
			t.Errorf("restored %v", b)
		}
		rs := b.PSID.Ranges()
		got[b.Set] = rs[0].First
	}
	if len(got) != 2 || got[0] != first || got[2] != first2 {
		t.Fatalf("restored sets %v, want 0:%d 2:%d", got, first, first2)
	}
	del := setReq(1, 2)
	del.lifetime = 0
	r2.a.FromAccess(pcpPacket(tB4A, del.marshal(t)))
	if m := r2.pcpReply(tB4A, r2.answers(1)[0]); m.Result != pcp.Success {
		t.Fatalf("delete of set 2: %v", m.Result)
	}
	r2.a.journal.Kill()
	r3 := journalRig(t, dir, clock)
	defer r3.a.Close()
	if bs := r3.a.Bindings(); len(bs) != 1 || bs[0].Set != 0 || bs[0].PSID.Ranges()[0].First != first {
		t.Errorf("after deleting set 2: %v, want set 0 only", bs)
	}
}
