// Package bindings is the lwAFTR's binding table (RFC 7596 §6.1) with its
// port-range-router lookup, and the port-set allocator behind the PCP server
// (RFC 6887 §11.3 and §15, RFC 7753).
//
// A binding is the 3-tuple {lwB4 IPv6 /128, public IPv4 address, port set}
// plus the BR (lwAFTR) IPv6 address that sources the softwire. The table
// serves the two data-plane questions of RFC 7596 §6.2: downstream, which B4
// owns (IPv4 destination, port) (Lookup); upstream, whether (IPv6 source,
// IPv4 source, port) is bound (Check). Port sets are RFC 7597 §5.1 PSIDs;
// the pool hands out only the a = 0 form (contiguous aligned blocks, RFC 7596
// §5.1), while operator tables may use any (a, k, PSID).
//
// Concurrency: the data-plane calls (Lookup, Check and their At forms) take
// no lock and never block each other or a writer. Per address the table
// keeps a fixed slice of entries indexed by PSID, reached through a radix of
// atomic pointers; each entry is a seqlock of atomic words (see entry), so a
// reader sees a whole binding or retries. Rejected: a copy-on-write snapshot
// of the whole table behind an atomic.Pointer, because at 4 M bindings every
// PCP request would copy ~350 MB; and an RWMutex on the data path, because
// RLock is an atomic add on one shared counter, so every packet of every
// goroutine would bounce the same cache line. Writers (AddStatic, Restore,
// Remove and the Pool) serialise on one mutex; they are control plane. ByB4,
// Len and Snapshot read under that mutex's read side.
package bindings

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lw4o6/lw4o6/stack/portset"
)

var (
	// ErrNoResources: no block is free (PCP NO_RESOURCES, RFC 6887 §7.4).
	ErrNoResources = errors.New("bindings: no free port set")
	// ErrQuota: the B4's subscriber prefix holds its quota of bindings
	// (PCP USER_EX_QUOTA, RFC 6887 §7.4).
	ErrQuota = errors.New("bindings: quota exceeded")
	// ErrInvalid: an address, port set or lifetime that cannot be a binding.
	ErrInvalid = errors.New("bindings: invalid binding")
	// ErrConflict: the binding collides with one already in the table.
	ErrConflict = errors.New("bindings: conflicting binding")
	// ErrStatic: a dynamic operation on a static binding (PCP NOT_AUTHORIZED,
	// RFC 6887 §11.3: a client may not delete a static mapping).
	ErrStatic = errors.New("bindings: binding is static")
	// ErrSetLimit: the B4 already holds PoolConfig.MaxSetsPerB4 port sets
	// (PCP USER_EX_QUOTA, docs/port-sets.md).
	ErrSetLimit = errors.New("bindings: B4 holds its most port sets")
)

// MaxSet is the largest set number: a B4's sets are numbered 0 (the first)
// to MaxSet by the Internal Port of the MAP that made them, which lies
// among the system ports no dynamic set ever holds (docs/port-sets.md).
const MaxSet = 1023

// Binding is one softwire.
type Binding struct {
	B4      netip.Addr   // lwB4 tunnel address (/128)
	IPv4    netip.Addr   // shared public IPv4 address
	PSID    portset.PSID // the B4's ports on IPv4 (RFC 7597 §5.1)
	BR      netip.Addr   // lwAFTR IPv6 address of the softwire
	Expires time.Time    // end of life; zero for a static binding
	Static  bool         // operator binding; never expires
	// Set numbers the B4's port sets: 0 for its first (and every static
	// binding), else the Internal Port of the MAP that made it, 2..MaxSet
	// (docs/port-sets.md).
	Set uint16
}

// Ports is the binding's port set: a portset.Range when a = 0, else the PSID.
func (b *Binding) Ports() portset.Set {
	if r, ok := b.PSID.Contiguous(); ok {
		return r
	}
	return b.PSID
}

func (b Binding) String() string {
	return fmt.Sprintf("%v %v %v br %v", b.B4, b.IPv4, b.PSID, b.BR)
}

// Config configures a Table.
type Config struct {
	// Now is the clock (default time.Now). Dynamic bindings past their
	// Expires are absent from Lookup and Check.
	Now func() time.Time
}

// Table is the binding table. The zero value is not usable; call New.
type Table struct {
	now func() time.Time
	r   *root
	brs atomic.Pointer[[]netip.Addr] // BR addresses, interned; append-only

	mu        sync.RWMutex // writers; ByB4, Snapshot and Len read under RLock
	brIdx     map[netip.Addr]uint16
	byB4      map[b4Key]uint64   // B4 -> first loc (ip<<16 | psid) it holds
	more      map[b4Key][]uint64 // further locs of B4s holding several
	nLive     int
	holdDown  int64 // ns; set by NewPool
	reserve   reservations
	nextSweep int64 // no dynamic entry changes state by itself before this
	pool      *Pool

	quotaBits int             // B4 prefix length that quotas count by; 0: off
	perPrefix map[b4Key]int32 // dynamic entries per B4 prefix
}

// New returns an empty table.
func New(cfg Config) *Table {
	t := &Table{
		now:       cfg.Now,
		r:         new(root),
		brIdx:     map[netip.Addr]uint16{},
		byB4:      map[b4Key]uint64{},
		more:      map[b4Key][]uint64{},
		perPrefix: map[b4Key]int32{},
		nextSweep: math.MaxInt64,
	}
	if t.now == nil {
		t.now = time.Now
	}
	t.brs.Store(&[]netip.Addr{})
	return t
}

// Lookup is the downstream port-range-router lookup (RFC 7596 §6.2): the B4
// and BR of the softwire that owns port on ipv4. It takes no lock and does
// not allocate; it reads the clock only for dynamic bindings.
func (t *Table) Lookup(ipv4 [4]byte, port uint16) (b4, br netip.Addr, ok bool) {
	return t.lookup(ipv4, port, 0)
}

// LookupAt is Lookup with the clock read by the caller, once per batch of
// packets rather than once per packet: now is a reading of the table's clock.
func (t *Table) LookupAt(ipv4 [4]byte, port uint16, now time.Time) (b4, br netip.Addr, ok bool) {
	return t.lookup(ipv4, port, now.UnixNano())
}

// Check is the upstream check (RFC 7596 §6.2): true iff ipv4 and the PSID of
// port are bound, live, to b4 — and port is in the set (not in block A = 0).
// Like Lookup it takes no lock and does not allocate.
func (t *Table) Check(b4 netip.Addr, ipv4 [4]byte, port uint16) bool {
	return t.check(b4, ipv4, port, 0)
}

// CheckBR is Check that also requires the binding's BR address to be br:
// a B4 tunnels to its own softwire's lwAFTR address (RFC 7596 §6.2, the
// per-softwire br-address of operator tables). Lock-free, no allocation.
func (t *Table) CheckBR(b4, br netip.Addr, ipv4 [4]byte, port uint16) bool {
	if !b4.Is6() {
		return false
	}
	v, ok := t.find(ipv4, port, 0)
	return ok && v.owner() == keyOf(b4) && (*t.brs.Load())[v.br()] == br
}

// CheckAt is Check with the clock read by the caller (see LookupAt).
func (t *Table) CheckAt(b4 netip.Addr, ipv4 [4]byte, port uint16, now time.Time) bool {
	return t.check(b4, ipv4, port, now.UnixNano())
}

// HasIPv4 reports whether any binding, live or not, has ever used ipv4: the
// address is one of the AFTR's B4 addresses, so traffic to it from a B4 is
// hairpinned and never leaves for the Internet. Lock-free, no allocation.
func (t *Table) HasIPv4(ipv4 [4]byte) bool { return t.r.get(u32(ipv4)) != nil }

// find returns the entry's value for (ipv4, port) if it is a live binding
// at now (Unix ns; 0: read the clock if the binding is dynamic).
func (t *Table) find(ipv4 [4]byte, port uint16, now int64) (slot, bool) {
	s := t.r.get(u32(ipv4))
	if s == nil {
		return slot{}, false
	}
	psid, in := s.psidOf(port)
	if !in {
		return slot{}, false
	}
	e := s.entry(psid)
	if e == nil {
		return slot{}, false
	}
	v := e.load()
	if !v.present() || v.held() {
		return slot{}, false
	}
	if !v.static() {
		if now == 0 {
			now = t.now().UnixNano()
		}
		if now >= v.exp {
			return slot{}, false
		}
	}
	return v, true
}

func (t *Table) lookup(ipv4 [4]byte, port uint16, now int64) (b4, br netip.Addr, ok bool) {
	v, ok := t.find(ipv4, port, now)
	if !ok {
		return
	}
	return v.owner().addr(), (*t.brs.Load())[v.br()], true
}

func (t *Table) check(b4 netip.Addr, ipv4 [4]byte, port uint16, now int64) bool {
	if !b4.Is6() {
		return false
	}
	v, ok := t.find(ipv4, port, now)
	return ok && v.owner() == keyOf(b4)
}

// ByB4 returns the live bindings of b4: one per port set it holds.
func (t *Table) ByB4(b4 netip.Addr) []Binding {
	if !b4.Is6() {
		return nil
	}
	now := t.now().UnixNano()
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []Binding
	for _, l := range t.locs(keyOf(b4)) {
		ip, psid := uint32(l>>16), uint16(l)
		if v := t.r.get(ip).slotAt(psid); v.live(now) {
			out = append(out, t.binding(ip, t.r.get(ip), psid, v))
		}
	}
	return out
}

// Len is the number of bindings, counting dynamic ones past their lifetime
// until the next Pool.Expire sweeps them.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.nLive
}

// Snapshot returns every live binding, ordered by IPv4 address and PSID.
func (t *Table) Snapshot() []Binding {
	now := t.now().UnixNano()
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]Binding, 0, t.nLive)
	t.r.each(func(ip uint32, s *addrSet) {
		s.eachEntry(func(psid uint16, e *entry) {
			if v := e.peek(); v.live(now) {
				out = append(out, t.binding(ip, s, psid, v))
			}
		})
	})
	return out
}

// AddStatic installs an operator binding. Any (a, k, PSID) of RFC 7597 §5.1
// is accepted, including a = 0 blocks below port 1024 (the operator's
// choice); b.Expires is ignored. Adding the same binding again is a no-op.
// It fails with ErrConflict when the address already holds softwires with
// other PSID parameters (a and k MUST match per address, RFC 7597 §5.1) or
// the PSID is bound to another B4; a dynamic PSID in hold-down is taken over.
func (t *Table) AddStatic(b Binding) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addStatic(b)
}

// AddStatics is AddStatic for many bindings under one lock, for loading an
// operator's table of millions. It stops at the first that fails and
// returns its index with the error; those before it are installed.
func (t *Table) AddStatics(bs []Binding) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, b := range bs {
		if err := t.addStatic(b); err != nil {
			return i, err
		}
	}
	return len(bs), nil
}

func (t *Table) addStatic(b Binding) error {
	ip, err := validate(&b)
	if err != nil {
		return err
	}
	s, err := t.ensureSet(ip, b.PSID.Offset, b.PSID.Length)
	if err != nil {
		return err
	}
	br, err := t.intern(b.BR)
	if err != nil {
		return err
	}
	key := keyOf(b.B4)
	want := slot{meta: flagPresent | flagStatic | uint32(br)<<16, hi: key.hi, lo: key.lo}
	old := s.slotAt(b.PSID.ID)
	if old == want {
		return nil
	}
	if old.present() && old.live(t.now().UnixNano()) {
		return fmt.Errorf("%w: %v %v is bound to %v", ErrConflict, b.IPv4, b.PSID, old.owner().addr())
	}
	t.setSlot(ip, s, b.PSID.ID, want)
	return nil
}

// Restore reinstalls a dynamic binding with its recorded Expires, for a
// journal replayed at start (nothing lost on a clean restart, PROTOCOL.md
// §8.6). The port set must be an a = 0 block. A binding already past its
// lifetime is restored too and swept by the next Pool.Expire.
func (t *Table) Restore(b Binding) error {
	if b.Static {
		return t.AddStatic(b)
	}
	ip, err := validate(&b)
	if err != nil {
		return err
	}
	if b.PSID.Offset != 0 || b.Expires.IsZero() || b.Set > MaxSet {
		return fmt.Errorf("%w: dynamic binding %v needs a = 0, an expiry and a set number ≤ %d", ErrInvalid, b, MaxSet)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now().UnixNano()
	key := keyOf(b.B4)
	loc := uint64(ip)<<16 | uint64(b.PSID.ID)
	for _, l := range t.locs(key) {
		if v := t.r.get(uint32(l >> 16)).slotAt(uint16(l)); l != loc && v.live(now) && !v.static() && v.set() == b.Set {
			return fmt.Errorf("%w: %v already has a dynamic binding as set %d", ErrConflict, b.B4, b.Set)
		}
	}
	s, err := t.ensureSet(ip, 0, b.PSID.Length)
	if err != nil {
		return err
	}
	br, err := t.intern(b.BR)
	if err != nil {
		return err
	}
	if old := s.slotAt(b.PSID.ID); old.live(now) && (old.static() || old.owner() != key) {
		return fmt.Errorf("%w: %v %v is bound to %v", ErrConflict, b.IPv4, b.PSID, old.owner().addr())
	}
	t.setSlot(ip, s, b.PSID.ID, slot{meta: flagPresent | uint32(b.Set)<<setShift | uint32(br)<<16, hi: key.hi, lo: key.lo, exp: b.Expires.UnixNano()})
	return nil
}

// Grow makes room in the B4 index for n more bindings, before n Restores
// (a journal replayed at start): growing a map of a million keys one
// doubling at a time costs more than the inserts.
func (t *Table) Grow(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := make(map[b4Key]uint64, len(t.byB4)+n)
	for k, v := range t.byB4 {
		m[k] = v
	}
	t.byB4 = m
}

// Remove deletes every dynamic binding of b4 at once, without hold-down
// (tests, operator), and returns how many live ones it removed. Hold-down
// records of b4 are dropped too; static bindings stay.
func (t *Table) Remove(b4 netip.Addr) int {
	if !b4.Is6() {
		return 0
	}
	now := t.now().UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, l := range t.locs(keyOf(b4)) {
		ip, psid := uint32(l>>16), uint16(l)
		s := t.r.get(ip)
		v := s.slotAt(psid)
		if v.static() {
			continue
		}
		if v.live(now) {
			n++
		}
		t.setSlot(ip, s, psid, slot{})
	}
	return n
}

// validate checks b and normalises it; it returns the IPv4 address as a word.
func validate(b *Binding) (uint32, error) {
	if !usableB4(b.B4) {
		return 0, fmt.Errorf("%w: B4 address %v is not a unicast IPv6 address", ErrInvalid, b.B4)
	}
	if !usableB4(b.BR) {
		return 0, fmt.Errorf("%w: BR address %v is not a unicast IPv6 address", ErrInvalid, b.BR)
	}
	b.IPv4 = b.IPv4.Unmap()
	if !usableIPv4(b.IPv4) {
		return 0, fmt.Errorf("%w: %v is not a unicast IPv4 address", ErrInvalid, b.IPv4)
	}
	if _, err := portset.NewPSID(b.PSID.Offset, b.PSID.Length, b.PSID.ID); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return u32(b.IPv4.As4()), nil
}

func usableB4(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && a.Zone() == "" && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLoopback()
}

func usableIPv4(a netip.Addr) bool {
	return a.Is4() && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLoopback() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// ensureSet returns the softwires of ip, made with (a, k) if the address has
// none; it fails if the address has other parameters (RFC 7597 §5.1).
func (t *Table) ensureSet(ip uint32, a, k uint8) (*addrSet, error) {
	s := t.r.get(ip)
	if s == nil {
		s = newAddrSet(a, k)
		t.r.put(ip, s)
		t.touch(ip, s)
		return s, nil
	}
	if s.a != a || s.k != k {
		return nil, fmt.Errorf("%w: %v: PSID parameters a=%d,k=%d conflict with a=%d,k=%d of its %d existing softwires (RFC 7597 §5.1)",
			ErrConflict, ip4(ip), a, k, s.a, s.k, s.n)
	}
	return s, nil
}

func (t *Table) intern(br netip.Addr) (uint16, error) {
	if old := *t.brs.Load(); len(old) > 0 && old[len(old)-1] == br {
		return uint16(len(old) - 1), nil // the usual case of a big static table: one BR
	}
	if i, ok := t.brIdx[br]; ok {
		return i, nil
	}
	old := *t.brs.Load()
	if len(old) >= 1<<16 {
		return 0, fmt.Errorf("%w: more than 65536 BR addresses", ErrInvalid)
	}
	brs := append(old[:len(old):len(old)], br)
	t.brs.Store(&brs)
	t.brIdx[br] = uint16(len(old))
	return uint16(len(old)), nil
}

// setSlot is the only place an entry changes: it keeps the per-address
// counts, the B4 index, the quota counts and the pool's view in step, and
// drops an address whose last entry is freed.
func (t *Table) setSlot(ip uint32, s *addrSet, psid uint16, v slot) {
	e := s.entryW(psid)
	loc := uint64(ip)<<16 | uint64(psid)
	old := e.peek()
	t.account(s, psid, loc, old, -1)
	e.store(v)
	t.account(s, psid, loc, v, +1)
	if v.present() && !v.static() {
		end := v.exp
		if !v.held() {
			end += t.holdDown
		}
		t.nextSweep = min(t.nextSweep, end)
	}
	switch {
	case !v.present() && uint32(psid) < s.hint:
		s.hint = uint32(psid)
	case v.present() && uint32(psid) == s.hint:
		s.hint++
	}
	if s.n == 0 {
		t.r.put(ip, nil)
		t.touch(ip, nil)
		return
	}
	t.touch(ip, s)
}

func (t *Table) account(s *addrSet, psid uint16, loc uint64, v slot, d int) {
	if !v.present() {
		return
	}
	s.n += d
	if s.a == 0 && uint32(psid) < lowPSID(s.k) {
		s.nLow += d
	}
	if !v.held() {
		s.nLive += d
		t.nLive += d
	}
	if d > 0 {
		t.idxAdd(v.owner(), loc)
	} else {
		t.idxDel(v.owner(), loc)
	}
	if v.reserved() {
		t.reserve.n += d
	}
	// A reservation is the pool's memory, not the subscriber's use: it
	// does not count against the quota.
	if !v.static() && !v.reserved() && t.quotaBits > 0 {
		p := prefixOf(v.owner(), t.quotaBits)
		if n := t.perPrefix[p] + int32(d); n > 0 {
			t.perPrefix[p] = n
		} else {
			delete(t.perPrefix, p)
		}
	}
}

func (t *Table) touch(ip uint32, s *addrSet) {
	if t.pool != nil {
		t.pool.touch(ip, s)
	}
}

func prefixOf(k b4Key, bits int) b4Key {
	switch {
	case bits <= 0:
		return b4Key{}
	case bits < 64:
		return b4Key{hi: k.hi &^ (1<<(64-bits) - 1)}
	case bits == 64:
		return b4Key{hi: k.hi}
	case bits < 128:
		return b4Key{k.hi, k.lo &^ (1<<(128-bits) - 1)}
	}
	return k
}

func (t *Table) idxAdd(k b4Key, loc uint64) {
	if _, ok := t.byB4[k]; !ok {
		t.byB4[k] = loc
		return
	}
	t.more[k] = append(t.more[k], loc)
}

func (t *Table) idxDel(k b4Key, loc uint64) {
	more := t.more[k]
	if first, ok := t.byB4[k]; ok && first == loc {
		if len(more) == 0 {
			delete(t.byB4, k)
			return
		}
		t.byB4[k] = more[len(more)-1]
		more = more[:len(more)-1]
	} else {
		for i, l := range more {
			if l == loc {
				more[i] = more[len(more)-1]
				more = more[:len(more)-1]
				break
			}
		}
	}
	if len(more) == 0 {
		delete(t.more, k)
	} else {
		t.more[k] = more
	}
}

// locs returns a copy of the locations B4 k holds (bindings and hold-downs).
func (t *Table) locs(k b4Key) []uint64 {
	first, ok := t.byB4[k]
	if !ok {
		return nil
	}
	return append([]uint64{first}, t.more[k]...)
}

func (t *Table) binding(ip uint32, s *addrSet, psid uint16, v slot) Binding {
	b := Binding{
		B4:     v.owner().addr(),
		IPv4:   ip4(ip),
		PSID:   portset.PSID{Offset: s.a, Length: s.k, ID: psid},
		BR:     (*t.brs.Load())[v.br()],
		Static: v.static(),
		Set:    v.set(),
	}
	if !v.static() {
		b.Expires = time.Unix(0, v.exp)
	}
	return b
}

// sweep moves dynamic bindings past their lifetime into hold-down and frees
// hold-down records whose time is up; it returns how many bindings expired.
func (t *Table) sweep(now int64) int {
	n := 0
	next := int64(math.MaxInt64)
	t.r.each(func(ip uint32, s *addrSet) {
		s.eachEntry(func(psid uint16, e *entry) {
			v := e.peek()
			if !v.present() || v.static() {
				return
			}
			if !v.held() && now >= v.exp {
				v.meta |= flagHeld
				v.exp += t.holdDown
				n++
				if now < v.exp {
					t.setSlot(ip, s, psid, v)
				}
			}
			if v.held() && now >= v.exp {
				if !t.reserveAfterHold(ip, s, psid, v, now) {
					t.setSlot(ip, s, psid, slot{})
					return
				}
				v = s.slotAt(psid)
			}
			end := v.exp
			if !v.held() {
				end += t.holdDown
			}
			next = min(next, end)
		})
	})
	t.nextSweep = next
	t.trimReserved()
	return n
}
