// Package aftr is the lwAFTR of RFC 7596: the binding table with its
// port-range-router lookup, the PCP server (RFC 6887 with PORT_SET, RFC 7753)
// that allocates each B4 a public IPv4 address and port set and installs its
// binding, the softwire data plane (decapsulate and check upstream, look up
// and encapsulate downstream, hairpinning; reassembly before and
// fragmentation after, RFC 6333 §6.3, RFC 7597 §8.3.2) and its ICMP policy.
//
// AFTR is a composition root: bindings.Table and bindings.Pool keep the
// state (static operator bindings and PCP's dynamic ones in one table),
// pcp.Server speaks the protocol, frag reassembles and fragments,
// dataplane.go moves packets. snabb.go imports Snabb lwAFTR's configuration
// as is and holds SnabbProfile, the knobs that make the AFTR emit what
// Snabb emits; replay.go runs the data plane offline over captures
// (`lw4o6-aftr check`, and the conformance test over Snabb's vectors).
package aftr

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/aftr/journal"
	"github.com/lw4o6/lw4o6/stack/counter"
	"github.com/lw4o6/lw4o6/stack/frag"
	"github.com/lw4o6/lw4o6/stack/pcp"
)

// Link is where the AFTR sends packets: whole IP datagrams. Send must not
// retain pkt after it returns (copy it if needed) and must not block.
type Link interface {
	Send(pkt []byte)
}

// Well-known addresses of the softwire (RFC 6333 §5.7, PROTOCOL.md §8 item 8).
var (
	addrAFTR4 = [4]byte{192, 0, 0, 1}
	addrB4_4  = [4]byte{192, 0, 0, 2}
)

// PCP ports (RFC 6887 §19.1).
const (
	pcpServerPort = 5351
	pcpClientPort = 5350
)

// AFTR is one lwAFTR instance.
type AFTR struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	addr6    [16]byte
	self4    *[4]byte                              // IPv4Addr, nil when unset
	addrs    atomic.Pointer[map[[16]byte]struct{}] // every IPv6 address of the AFTR; copied on write
	table    *bindings.Table
	pool     *bindings.Pool // nil without Pools: static bindings only
	pcp      *pcp.Server
	count    *counter.Set
	limiter4 *rateLimiter
	limiter6 *rateLimiter
	perSrc6  *prefixLimiter // nil: no per-prefix limit
	pcpLimit *pcpLimiter    // nil: no PCP rate limit (pcplimit.go)
	ann      *announcer
	reasm4   *frag.Reassembler4
	reasm6   *frag.Reassembler6
	ids      frag.IDs
	access   Link
	internet Link

	addrMu sync.Mutex // writers of addrs

	mu     sync.Mutex
	nonces map[netip.Addr][12]byte // per B4: the nonce that owns its mapping (RFC 6887 §11.3 Simple Threat Model)

	reload reloadState // the bindings file, for ReloadStatic (reload.go)

	journal  *journal.Journal // nil without StateDir (journal.go)
	restored bool
}

// New builds an AFTR. access carries IPv6 to and from the B4s; internet
// carries IPv4 to and from the Internet.
func New(cfg Config, access, internet Link) (*AFTR, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if access == nil || internet == nil {
		return nil, fmt.Errorf("%w: nil link", ErrConfig)
	}
	a := &AFTR{
		cfg:      cfg,
		log:      cfg.Logger,
		now:      cfg.Now,
		addr6:    cfg.Addr.As16(),
		count:    counter.NewSet(counterNames...),
		access:   access,
		internet: internet,
		nonces:   make(map[netip.Addr][12]byte),
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	if cfg.IPv4Addr.IsValid() {
		s := cfg.IPv4Addr.As4()
		a.self4 = &s
	}
	rate := func(r int) int {
		if r > 0 {
			return r
		}
		return cfg.ICMPRate
	}
	a.limiter4 = newRateLimiter(rate(cfg.ICMPv4Rate), a.now)
	a.limiter6 = newRateLimiter(rate(cfg.ICMPv6Rate), a.now)
	switch per := cfg.ICMPv6RatePerPrefix; {
	case per == 0:
		a.perSrc6 = newPrefixLimiter(max(rate(cfg.ICMPv6Rate)/10, 1), a.now)
	case per > 0:
		a.perSrc6 = newPrefixLimiter(per, a.now)
	}
	a.pcpLimit = newPCPLimiter(&cfg)
	a.ann = newAnnouncer(a.now)
	r4, r6 := cfg.Reassembly4, cfg.Reassembly6
	r4.Now, r6.Now = a.now, a.now
	a.reasm4, a.reasm6 = frag.NewReassembler4(r4), frag.NewReassembler6(r6)
	a.ids = cfg.FragmentIDs
	if a.ids == nil {
		a.ids = frag.RandomIDs()
	}
	a.table = cfg.snabb.table(a.now) // LoadSnabb's, or a new one
	a.reload.settings = cfg.snabbSettings
	a.addAddrs(append(append([]netip.Addr{cfg.Addr}, cfg.Addrs...), cfg.snabb.addrs()...)...)
	if len(cfg.Pools) > 0 {
		pool, err := bindings.NewPool(a.table, bindings.PoolConfig{
			Prefixes:    cfg.Pools,
			PortsPerB4:  cfg.PortsPerB4,
			MinLifetime: cfg.LifetimeMin,
			MaxLifetime: cfg.LifetimeMax,
			BR:          cfg.Addr,
			Now:         a.now,
			// RFC 6887 §11.3, RFC 7753 §6: a per-subscriber quota, so one
			// subscriber inventing B4 addresses cannot drain the pool.
			QuotaPerPrefix: cfg.QuotaPerPrefix,
			QuotaPrefixLen: cfg.QuotaPrefixLen,
			MaxSetsPerB4:   cfg.MaxSetsPerB4, // docs/port-sets.md; 0 is 1
		})
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		a.pool = pool
	}
	for _, b := range cfg.Static {
		if err := a.AddStatic(b); err != nil {
			return nil, fmt.Errorf("%w: static binding %v: %w", ErrConfig, b, err)
		}
	}
	// The table holds them now: a copy kept in a.cfg would double a large
	// table's memory (a million bindings: ~100 MiB of pointers for the GC).
	a.cfg.Static = nil
	var epochStart time.Time
	if cfg.StateDir != "" {
		start, err := a.openJournal()
		if err != nil {
			return nil, fmt.Errorf("%w: StateDir: %w", ErrConfig, err)
		}
		epochStart = start
	}
	a.pcp = pcp.NewServer(pcp.ServerConfig{
		Handler:           (*pcpHandler)(a),
		Now:               a.now,
		Logger:            a.log,
		ThirdPartyAllowed: a.thirdPartyAllowed,
		EpochStart:        epochStart,
	})
	if err := a.journalEpoch(); err != nil {
		a.journal.Close()
		return nil, fmt.Errorf("aftr: journal: %w", err)
	}
	return a, nil
}

// Run expires bindings whose lifetime has passed, once a second, and sends
// the ANNOUNCEs of a state loss (announce.go), until ctx is done. It starts
// with AnnounceStateLoss when no state was restored.
func (a *AFTR) Run(ctx context.Context) error {
	if !a.Restored() {
		a.AnnounceStateLoss()
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); a.runAnnouncer(ctx) }()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			a.Expire()
		}
	}
}

// Expire drops bindings past their lifetime, and datagrams waiting for
// reassembly past its timeout, now. It returns how many bindings expired.
func (a *AFTR) Expire() int {
	a.reasm4.Expire()
	a.reasm6.Expire()
	if a.pool == nil {
		return 0
	}
	now := a.now()
	n := a.pool.Expire()
	if n > 0 {
		a.journalExpire(now)
		a.log.Info("bindings expired", "count", n)
	}
	a.pruneNonces()
	return n
}

// pruneNonces forgets the nonces of B4s that hold no live binding any more
// (expired, not deleted by PCP): only an existing mapping's nonce is
// checked (RFC 6887 §11.3), and without this every B4 ever served would
// stay in the map. A walk is O(len(nonces)), so it runs only once the map
// has outgrown twice the table (and a slack): its cost is amortised.
func (a *AFTR) pruneNonces() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.nonces) <= 2*a.table.Len()+64 {
		return
	}
	for b4 := range a.nonces {
		if len(a.table.ByB4(b4)) == 0 {
			delete(a.nonces, b4)
		}
	}
}

// AddStatic installs an operator binding (RFC 7597 §5.1 port set; its BR
// address becomes one of the AFTR's addresses) in the table the PCP
// bindings share. It fails when the binding conflicts with one there
// (bindings.ErrConflict: another B4 holds the PSID, or the address has
// other PSID parameters, RFC 7597 §5.1).
func (a *AFTR) AddStatic(b bindings.Binding) error {
	if !b.BR.IsValid() {
		b.BR = a.cfg.Addr
	}
	b.Static = true
	if err := a.table.AddStatic(b); err != nil {
		return err
	}
	a.addAddrs(b.BR)
	return nil
}

// addAddrs adds IPv6 addresses to the AFTR's own.
func (a *AFTR) addAddrs(addrs ...netip.Addr) {
	a.addrMu.Lock()
	defer a.addrMu.Unlock()
	old := a.addrs.Load()
	m := make(map[[16]byte]struct{})
	if old != nil {
		for k := range *old {
			m[k] = struct{}{}
		}
	}
	for _, x := range addrs {
		m[x.As16()] = struct{}{}
	}
	a.addrs.Store(&m)
}

// ownsIPv6 reports whether addr is one of the AFTR's IPv6 addresses:
// Addr, Addrs and the BR addresses of its bindings.
func (a *AFTR) ownsIPv6(addr [16]byte) bool {
	if addr == a.addr6 {
		return true
	}
	_, ok := (*a.addrs.Load())[addr]
	return ok
}

// Bindings returns the current binding table.
func (a *AFTR) Bindings() []bindings.Binding { return a.table.Snapshot() }

// RemoveBinding deletes b4's dynamic binding, as an operator (or lost state)
// would. It reports whether there was one.
func (a *AFTR) RemoveBinding(b4 netip.Addr) bool {
	if a.pool == nil {
		return false
	}
	// Under a.mu, as Map: a MAP between the release and the delete would
	// leave its new binding without a nonce.
	a.mu.Lock()
	sets := a.table.ByB4(b4)
	ok, _ := a.pool.Release(b4)
	delete(a.nonces, b4)
	if ok {
		for _, b := range sets {
			if !b.Static {
				a.journalDelete(nil, b4, b.Set)
			}
		}
	}
	a.mu.Unlock()
	if ok {
		a.log.Info("binding removed", "b4", b4)
	}
	return ok
}

// Counters returns every non-zero counter, as name-packets and name-bytes
// in Snabb's naming scheme (counters.go), with the reassembly tables'
// whole-datagram drops (name-packets only).
func (a *AFTR) Counters() map[string]uint64 {
	m := a.count.Snapshot()
	for _, r := range []struct {
		fam string
		st  frag.Stats
	}{{"ipv4", a.reasm4.Stats()}, {"ipv6", a.reasm6.Stats()}} {
		if r.st.Evicted > 0 {
			m["drop-"+r.fam+"-frag-evicted-packets"] = r.st.Evicted
		}
		if r.st.Timeouts > 0 {
			m["drop-"+r.fam+"-frag-timed-out-packets"] = r.st.Timeouts
		}
	}
	return m
}

// Epoch is the PCP server's current Epoch time.
func (a *AFTR) Epoch() uint32 { return a.pcp.Epoch() }

// ownsIPv4 reports whether addr is one of the AFTR's B4 addresses, so that
// a packet from one B4 to it is hairpinned and never sent to the Internet.
func (a *AFTR) ownsIPv4(addr [4]byte) bool {
	if a.table.HasIPv4(addr) {
		return true
	}
	ip := netip.AddrFrom4(addr)
	for _, p := range a.cfg.Pools {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
