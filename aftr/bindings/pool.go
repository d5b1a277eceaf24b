package bindings

import (
	"fmt"
	"math/bits"
	"net/netip"
	"sort"
	"time"
)

// PoolConfig configures the PCP server's allocator.
type PoolConfig struct {
	// Prefixes are the IPv4 pools, used in this order: blocks are packed
	// into the first addresses first.
	Prefixes []netip.Prefix
	// PortsPerB4 is the largest block a B4 gets: a power of two in
	// [2, 32768]. Whole addresses (65536) are not offered: every block
	// then holds ports 0-1023, which RFC 7596 §5.1 says not to allocate.
	PortsPerB4 int
	// MinPortsPerB4 is the smallest block (power of two, default 2); a
	// request for fewer ports fails with ErrNoResources, since RFC 7753 §4
	// forbids mapping more ports than asked.
	MinPortsPerB4 int
	// MinLifetime and MaxLifetime bound granted lifetimes (defaults 120 s
	// and 24 h, RFC 6887 §15).
	MinLifetime, MaxLifetime time.Duration
	// HoldDown keeps a released or expired block from other B4s (default
	// 2 min, RFC 6887 §15); negative means none.
	HoldDown time.Duration
	// ReserveFor keeps a block reserved for its last owner this long after
	// its hold-down ends (default 1 h; negative: none): newcomers take
	// unreserved blocks first (reserve.go). MaxReserved bounds the
	// reservations kept (default 1 << 20), the oldest evicted first.
	ReserveFor  time.Duration
	MaxReserved int
	// QuotaPerPrefix, when > 0, caps the dynamic blocks (live or in
	// hold-down) of all B4 addresses within one QuotaPrefixLen-bit IPv6
	// prefix (default /64), so that a subscriber cannot drain the pool by
	// minting B4 addresses (RFC 6887 §11.3 RECOMMENDS per-subscriber
	// quotas). Exceeding it is ErrQuota (USER_EX_QUOTA).
	QuotaPerPrefix int
	QuotaPrefixLen int
	// MaxSetsPerB4 caps the port sets one B4 address holds at once
	// (static ones included); a request for one more is ErrSetLimit
	// (docs/port-sets.md). 0 means 1, the single set of PROTOCOL.md §8.2.
	MaxSetsPerB4 int
	// BR is the lwAFTR IPv6 address the pool's softwires use.
	BR netip.Addr
	// Now is the clock; default the table's. Give the table and the pool
	// the same clock.
	Now func() time.Time
}

// Request is the allocation part of a PCP MAP with PORT_SET (PROTOCOL.md §8.1).
type Request struct {
	Size               int        // requested port-set size, 1..65535; 65535: as many as allowed (RFC 7753 §4)
	SuggestedIPv4      netip.Addr // zero, 0.0.0.0 or ::ffff:0.0.0.0: no preference
	SuggestedFirstPort uint16     // 0: no preference
	Lifetime           time.Duration
	// Set is which of the B4's sets is asked for: 0 its first, else
	// 2..MaxSet (docs/port-sets.md). Each set is renewed, released and
	// capped on its own.
	Set uint16
}

// Pool allocates port sets from IPv4 prefixes into a Table. It shares the
// table's writer lock, so Allocate, Release and Expire may be called from
// any goroutine.
//
// Blocks are contiguous, aligned, power-of-two sized (a = 0, RFC 7596 §5.1):
// block i of an address is [i·size, i·size+size-1], PSID k = 16 - log2(size).
// Blocks are packed densely — the partly used address earliest in pool order
// first, an empty address only when none is left — rather than spread.
// Sharing addresses is the point of lw4o6: packing keeps the most addresses
// wholly free, and since a and k are fixed per address by its first block
// (RFC 7597 §5.1), free whole addresses are what requests of another size
// (or a later PortsPerB4) need; packing also keeps the addresses exposed to
// the Internet, and the ones the operator must route, few. (Spreading would
// put fewer subscribers behind each address for IP-reputation purposes, but
// lw4o6 already decided that sharing is acceptable.)
type Pool struct {
	t       *Table
	cfg     PoolConfig
	now     func() time.Time
	spans   []span
	n       int // addresses in the pool
	br      uint16
	kBig    uint8 // k of PortsPerB4
	kSmall  uint8 // k of MinPortsPerB4
	empty   *bitmap
	partial [17]*bitmap // by k: addresses of that k with a free block
}

type span struct {
	first uint32 // first address
	n     int    // addresses
	off   int    // pool index of first
}

// NewPool attaches an allocator to t; a table has at most one pool. Static
// bindings already in t on pool addresses stay: an address whose static
// bindings have other parameters than a pool block is not used.
func NewPool(t *Table, cfg PoolConfig) (*Pool, error) {
	if t == nil {
		return nil, fmt.Errorf("%w: nil table", ErrInvalid)
	}
	p := &Pool{t: t, cfg: cfg}
	if err := p.configure(); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pool != nil {
		return nil, fmt.Errorf("%w: table already has a pool", ErrInvalid)
	}
	br, err := t.intern(cfg.BR)
	if err != nil {
		return nil, err
	}
	p.br = br
	t.holdDown = int64(p.cfg.HoldDown)
	t.reserve.for_, t.reserve.max = int64(p.cfg.ReserveFor), p.cfg.MaxReserved
	t.quotaBits = 0
	if p.cfg.QuotaPerPrefix > 0 {
		t.quotaBits = p.cfg.QuotaPrefixLen
		clear(t.perPrefix)
		t.r.each(func(_ uint32, s *addrSet) {
			s.eachEntry(func(_ uint16, e *entry) {
				if v := e.peek(); v.present() && !v.static() {
					t.perPrefix[prefixOf(v.owner(), t.quotaBits)]++
				}
			})
		})
	}
	p.empty = newBitmap(p.n)
	for k := p.kBig; k <= p.kSmall; k++ {
		p.partial[k] = newBitmap(p.n)
	}
	for i := range p.n {
		ip := p.ip(i)
		p.touch(ip, t.r.get(ip))
	}
	// Blocks restored from a journal may have passed their lifetime.
	t.nextSweep = min(t.nextSweep, t.now().UnixNano())
	t.pool = p
	return p, nil
}

func (p *Pool) configure() error {
	c := &p.cfg
	if len(c.Prefixes) == 0 {
		return fmt.Errorf("%w: pool has no IPv4 prefix", ErrInvalid)
	}
	for _, pf := range c.Prefixes {
		if !pf.IsValid() || !pf.Addr().Is4() || pf.Masked() != pf || pf.Bits() < 8 {
			return fmt.Errorf("%w: pool prefix %v is not a masked IPv4 prefix of /8 or longer", ErrInvalid, pf)
		}
		for _, o := range c.Prefixes {
			if o != pf && o.Overlaps(pf) {
				return fmt.Errorf("%w: pool prefixes %v and %v overlap", ErrInvalid, pf, o)
			}
		}
		n := 1 << (32 - pf.Bits())
		p.spans = append(p.spans, span{first: u32(pf.Addr().As4()), n: n, off: p.n})
		p.n += n
	}
	if p.n > 1<<24 {
		return fmt.Errorf("%w: pool of %d addresses is larger than 2^24", ErrInvalid, p.n)
	}
	if !pow2In(c.PortsPerB4, 2, 32768) {
		return fmt.Errorf("%w: PortsPerB4 %d is not a power of two in [2, 32768]", ErrInvalid, c.PortsPerB4)
	}
	if c.MinPortsPerB4 == 0 {
		c.MinPortsPerB4 = 2
	}
	if !pow2In(c.MinPortsPerB4, 2, c.PortsPerB4) {
		return fmt.Errorf("%w: MinPortsPerB4 %d is not a power of two in [2, PortsPerB4]", ErrInvalid, c.MinPortsPerB4)
	}
	p.kBig = kOf(c.PortsPerB4)
	p.kSmall = kOf(c.MinPortsPerB4)
	if c.MinLifetime == 0 {
		c.MinLifetime = 120 * time.Second
	}
	if c.MaxLifetime == 0 {
		c.MaxLifetime = 24 * time.Hour
	}
	if c.MinLifetime < 0 || c.MaxLifetime < c.MinLifetime {
		return fmt.Errorf("%w: lifetimes min %v max %v", ErrInvalid, c.MinLifetime, c.MaxLifetime)
	}
	switch {
	case c.HoldDown == 0:
		c.HoldDown = 2 * time.Minute
	case c.HoldDown < 0:
		c.HoldDown = 0
	}
	switch {
	case c.ReserveFor == 0:
		c.ReserveFor = time.Hour
	case c.ReserveFor < 0:
		c.ReserveFor = 0
	}
	if c.MaxReserved == 0 {
		c.MaxReserved = 1 << 20
	}
	if c.MaxReserved < 0 {
		return fmt.Errorf("%w: MaxReserved %d", ErrInvalid, c.MaxReserved)
	}
	if c.QuotaPerPrefix < 0 {
		return fmt.Errorf("%w: QuotaPerPrefix %d", ErrInvalid, c.QuotaPerPrefix)
	}
	if c.MaxSetsPerB4 == 0 {
		c.MaxSetsPerB4 = 1
	}
	if c.MaxSetsPerB4 < 1 || c.MaxSetsPerB4 > MaxSet {
		return fmt.Errorf("%w: MaxSetsPerB4 %d is not in [1, %d]", ErrInvalid, c.MaxSetsPerB4, MaxSet)
	}
	if c.QuotaPrefixLen == 0 {
		c.QuotaPrefixLen = 64
	}
	if c.QuotaPrefixLen < 1 || c.QuotaPrefixLen > 128 {
		return fmt.Errorf("%w: QuotaPrefixLen %d", ErrInvalid, c.QuotaPrefixLen)
	}
	if !usableB4(c.BR) {
		return fmt.Errorf("%w: BR address %v is not a unicast IPv6 address", ErrInvalid, c.BR)
	}
	p.now = c.Now
	if p.now == nil {
		p.now = p.t.now
	}
	return nil
}

func pow2In(v, lo, hi int) bool { return v >= lo && v <= hi && v&(v-1) == 0 }

// kOf is the PSID length of an a = 0 block of size ports.
func kOf(size int) uint8 { return uint8(16 - bits.TrailingZeros(uint(size))) }

// Allocate gives b4 its port set number req.Set, or renews it (RFC 6887
// §11.3, RFC 7753 §4), and returns the binding now in the table:
//   - for set 0, a static binding of b4 is returned as it is (infinite
//     lifetime);
//   - a live dynamic binding of b4 with that set number is renewed: new
//     lifetime, same address and ports, whatever was suggested or asked;
//   - a new set past MaxSetsPerB4 live ones is ErrSetLimit;
//   - otherwise b4 gets a block of min(PortsPerB4, largest power of two
//     ≤ req.Size) ports: the suggested block if it is free and not held
//     down for another B4 (b4 may reclaim its own, RFC 6887 §15; another's
//     reservation does not stop it), else another unreserved block on the
//     suggested address — with no suggestion, the address of b4's other
//     sets (RFC 7753 §6.1: one external address per subscriber) — else
//     b4's own block still in hold-down or reserved, else the first free
//     unreserved block in pool order (see Pool), else the oldest
//     reservation of another B4 (reserve.go).
//
// The lifetime is req.Lifetime clamped to [MinLifetime, MaxLifetime]. A
// lifetime of 0 is a PCP delete: the caller routes it to Release, and here
// it is ErrInvalid. A THIRD_PARTY request (a provisioning system installing
// a binding for a named B4, PROTOCOL.md §8.4) calls Allocate with that B4's
// address, like any other.
func (p *Pool) Allocate(b4 netip.Addr, req Request) (Binding, error) {
	if !usableB4(b4) {
		return Binding{}, fmt.Errorf("%w: B4 address %v is not a unicast IPv6 address", ErrInvalid, b4)
	}
	if req.Size < 1 || req.Size > 65535 {
		return Binding{}, fmt.Errorf("%w: port-set size %d", ErrInvalid, req.Size)
	}
	if req.Lifetime <= 0 {
		return Binding{}, fmt.Errorf("%w: lifetime %v (0 is a delete: call Release)", ErrInvalid, req.Lifetime)
	}
	if req.Set > MaxSet {
		return Binding{}, fmt.Errorf("%w: set number %d over %d", ErrInvalid, req.Set, MaxSet)
	}
	size := p.cfg.PortsPerB4
	if req.Size < size {
		size = 1 << (bits.Len(uint(req.Size)) - 1)
	}
	if size < p.cfg.MinPortsPerB4 {
		return Binding{}, fmt.Errorf("%w: %d ports asked, the smallest block is %d", ErrNoResources, req.Size, p.cfg.MinPortsPerB4)
	}
	k := kOf(size)
	life := min(max(req.Lifetime, p.cfg.MinLifetime), p.cfg.MaxLifetime)
	now := p.now()
	nowNs, exp := now.UnixNano(), now.Add(life).UnixNano()
	key := keyOf(b4)

	t := p.t
	t.mu.Lock()
	defer t.mu.Unlock()

	locs := t.locs(key)
	for _, l := range locs {
		ip, psid := uint32(l>>16), uint16(l)
		if s := t.r.get(ip); s.slotAt(psid).static() && req.Set == 0 {
			return t.binding(ip, s, psid, s.slotAt(psid)), nil
		}
	}
	others := 0 // b4's live sets other than req.Set
	var home netip.Addr
	for _, l := range locs {
		ip, psid := uint32(l>>16), uint16(l)
		s := t.r.get(ip)
		v := s.slotAt(psid)
		switch {
		case !v.live(nowNs):
		case v.set() == req.Set && !v.static():
			v.exp = exp
			t.setSlot(ip, s, psid, v)
			return t.binding(ip, s, psid, v), nil
		default:
			others++
			if !home.IsValid() || v.set() == 0 {
				home = ip4(ip)
			}
		}
	}
	if others >= p.cfg.MaxSetsPerB4 {
		return Binding{}, fmt.Errorf("%w: B4 %v holds %d port sets", ErrSetLimit, b4, others)
	}
	if a := req.SuggestedIPv4.Unmap(); (!a.Is4() || a.IsUnspecified()) && home.IsValid() {
		req.SuggestedIPv4, req.SuggestedFirstPort = home, 0
	}

	quotaOK := p.cfg.QuotaPerPrefix == 0 || int(t.perPrefix[prefixOf(key, t.quotaBits)]) < p.cfg.QuotaPerPrefix
	take := func(ip uint32, s *addrSet, psid uint16) Binding {
		if s == nil {
			s = newAddrSet(0, k)
			t.r.put(ip, s)
		}
		v := slot{meta: flagPresent | uint32(req.Set)<<setShift | uint32(p.br)<<16, hi: key.hi, lo: key.lo, exp: exp}
		t.setSlot(ip, s, psid, v)
		t.dropOtherReservations(key, uint64(ip)<<16|uint64(psid))
		return t.binding(ip, s, psid, v)
	}
	if ip, s, psid, ok := p.suggested(req, k, key, nowNs, quotaOK); ok {
		return take(ip, s, psid), nil
	}
	for _, l := range locs { // b4's own block in hold-down (or expired)
		ip, psid := uint32(l>>16), uint16(l)
		if s := t.r.get(ip); s.a == 0 && s.k == k && p.contains(ip) && uint32(psid) >= lowPSID(k) && !s.slotAt(psid).live(nowNs) {
			return take(ip, s, psid), nil
		}
	}
	if !quotaOK {
		return Binding{}, fmt.Errorf("%w: B4 %v's /%d holds %d port sets", ErrQuota, b4, t.quotaBits, p.cfg.QuotaPerPrefix)
	}
	for try := 0; try < 2; try++ {
		if i := p.partial[k].first(); i >= 0 {
			ip := p.ip(i)
			s := t.r.get(ip)
			if psid, ok := s.firstFree(); ok {
				return take(ip, s, psid), nil
			}
		}
		if i := p.empty.first(); i >= 0 {
			return take(p.ip(i), nil, uint16(lowPSID(k))), nil
		}
		if try > 0 || nowNs < t.nextSweep {
			break
		}
		// Blocks whose hold-down ended are free only once swept; sweep
		// now rather than refuse, at most once per state change.
		t.sweep(nowNs)
	}
	if ip, s, psid, ok := p.takeReserved(k); ok {
		return take(ip, s, psid), nil
	}
	return Binding{}, fmt.Errorf("%w: no %d-port block free in the pool", ErrNoResources, size)
}

// suggested finds the block the request suggests, or another block on the
// suggested address, if b4 may have it (RFC 6887 §11.3: honour the
// suggestion when possible; it is only a hint).
func (p *Pool) suggested(req Request, k uint8, key b4Key, now int64, quotaOK bool) (uint32, *addrSet, uint16, bool) {
	a := req.SuggestedIPv4.Unmap()
	if !a.Is4() || a.IsUnspecified() {
		return 0, nil, 0, false
	}
	ip := u32(a.As4())
	if !p.contains(ip) {
		return 0, nil, 0, false
	}
	s := p.t.r.get(ip)
	if s != nil && (s.a != 0 || s.k != k) {
		return 0, nil, 0, false
	}
	lo, n := lowPSID(k), uint32(1)<<k
	if req.SuggestedFirstPort != 0 {
		psid := uint32(req.SuggestedFirstPort) >> (16 - k)
		if psid >= lo && p.avail(s, uint16(psid), key, now, quotaOK, true) {
			return ip, s, uint16(psid), true
		}
	}
	for psid := lo; psid < n; psid++ {
		if p.avail(s, uint16(psid), key, now, quotaOK, false) {
			return ip, s, uint16(psid), true
		}
	}
	return 0, nil, 0, false
}

// avail reports whether b4 may take psid on s (nil: an empty address): it
// is free, or b4's own (hold-down reclaim, RFC 6887 §15), or another's
// whose lifetime and hold-down have both run out; another's reservation
// only when exact (b4 named that very block) or ended.
func (p *Pool) avail(s *addrSet, psid uint16, key b4Key, now int64, quotaOK, exact bool) bool {
	var v slot
	if s != nil {
		v = s.slotAt(psid)
	}
	switch {
	case !v.present():
		return quotaOK
	case v.static():
		return false
	case v.owner() == key:
		// Its own block, unless it is live as another of its sets.
		return !v.live(now)
	case v.reserved():
		return quotaOK && (exact || now >= v.exp)
	case v.held():
		return quotaOK && now >= v.exp
	}
	return quotaOK && now >= v.exp+p.t.holdDown
}

// firstFree returns the lowest free PSID clear of the system ports.
func (s *addrSet) firstFree() (uint16, bool) {
	for psid := max(s.hint, lowPSID(s.k)); psid < s.size(); psid++ {
		if !s.slotAt(uint16(psid)).present() {
			s.hint = psid
			return uint16(psid), true
		}
	}
	return 0, false
}

// Release deletes b4's dynamic bindings, all its sets (PCP MAP with lifetime
// 0, RFC 6887 §15): the blocks go into hold-down, reclaimable by b4 only. It
// returns whether there was a live binding; none is not an error (a
// retransmitted delete gets the same answer). A B4 with only static
// bindings gets ErrStatic (NOT_AUTHORIZED).
func (p *Pool) Release(b4 netip.Addr) (bool, error) {
	return p.release(b4, -1)
}

// ReleaseSet is Release for one of b4's sets (docs/port-sets.md): its other
// sets stay. Set 0 with only a static binding is ErrStatic.
func (p *Pool) ReleaseSet(b4 netip.Addr, set uint16) (bool, error) {
	return p.release(b4, int(set))
}

// release releases b4's set number set, or all of them when set < 0.
func (p *Pool) release(b4 netip.Addr, set int) (bool, error) {
	if !usableB4(b4) {
		return false, fmt.Errorf("%w: B4 address %v is not a unicast IPv6 address", ErrInvalid, b4)
	}
	now := p.now().UnixNano()
	t := p.t
	t.mu.Lock()
	defer t.mu.Unlock()
	released, static := false, false
	for _, l := range t.locs(keyOf(b4)) {
		ip, psid := uint32(l>>16), uint16(l)
		s := t.r.get(ip)
		v := s.slotAt(psid)
		switch {
		case set >= 0 && int(v.set()) != set:
		case v.static():
			static = true
		case v.live(now):
			v.meta |= flagHeld
			v.exp = now + t.holdDown
			t.setSlot(ip, s, psid, v)
			released = true
		}
	}
	if !released && static {
		return false, fmt.Errorf("%w: %v", ErrStatic, b4)
	}
	return released, nil
}

// Expire moves dynamic bindings past their lifetime into hold-down and frees
// blocks whose hold-down is over; it returns how many bindings expired. Call
// it periodically (every few seconds); it walks the whole table.
func (p *Pool) Expire() int {
	now := p.now().UnixNano()
	p.t.mu.Lock()
	defer p.t.mu.Unlock()
	return p.t.sweep(now)
}

// touch updates the pool's view of one address (called under Table.mu).
func (p *Pool) touch(ip uint32, s *addrSet) {
	i, ok := p.index(ip)
	if !ok {
		return
	}
	p.empty.put(i, s == nil)
	for k := p.kBig; k <= p.kSmall; k++ {
		p.partial[k].put(i, s != nil && s.a == 0 && s.k == k && s.free() > 0)
	}
}

func (p *Pool) contains(ip uint32) bool {
	_, ok := p.index(ip)
	return ok
}

func (p *Pool) index(ip uint32) (int, bool) {
	for _, s := range p.spans {
		if ip-s.first < uint32(s.n) {
			return s.off + int(ip-s.first), true
		}
	}
	return 0, false
}

func (p *Pool) ip(i int) uint32 {
	j := sort.Search(len(p.spans), func(j int) bool { return p.spans[j].off+p.spans[j].n > i })
	s := p.spans[j]
	return s.first + uint32(i-s.off)
}
