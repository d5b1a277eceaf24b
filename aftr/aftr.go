// Package aftr is the lwAFTR of RFC 7596: the binding table with its
// port-range-router lookup, the PCP server (RFC 6887 with PORT_SET, RFC 7753)
// that allocates each B4 a public IPv4 address and port set and installs its
// binding, the softwire data plane (decapsulate and check upstream, look up
// and encapsulate downstream, hairpinning) and its ICMP policy.
//
// AFTR is a composition root: bindings.Table and bindings.Pool keep the
// state, pcp.Server speaks the protocol, dataplane.go moves packets.
package aftr

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/stack/counter"
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
	table    *bindings.Table
	pool     *bindings.Pool
	pcp      *pcp.Server
	count    *counter.Set
	limiter  *rateLimiter
	access   Link
	internet Link

	mu     sync.Mutex
	nonces map[netip.Addr][12]byte // per B4: the nonce that owns its mapping (RFC 6887 §11.3 Simple Threat Model)
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
	a.limiter = newRateLimiter(cfg.ICMPRate, a.now)
	a.table = bindings.New(bindings.Config{Now: a.now})
	pool, err := bindings.NewPool(a.table, bindings.PoolConfig{
		Prefixes:    cfg.Pools,
		PortsPerB4:  cfg.PortsPerB4,
		MinLifetime: cfg.LifetimeMin,
		MaxLifetime: cfg.LifetimeMax,
		BR:          cfg.Addr,
		Now:         a.now,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	a.pool = pool
	a.pcp = pcp.NewServer(pcp.ServerConfig{
		Handler:           (*pcpHandler)(a),
		Now:               a.now,
		Logger:            a.log,
		ThirdPartyAllowed: a.thirdPartyAllowed,
	})
	return a, nil
}

// Run expires bindings whose lifetime has passed, once a second, until ctx
// is done.
func (a *AFTR) Run(ctx context.Context) error {
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

// Expire drops bindings past their lifetime now.
func (a *AFTR) Expire() int {
	n := a.pool.Expire()
	if n > 0 {
		a.log.Info("bindings expired", "count", n)
	}
	return n
}

// Bindings returns the current binding table.
func (a *AFTR) Bindings() []bindings.Binding { return a.table.Snapshot() }

// RemoveBinding deletes b4's dynamic binding, as an operator (or lost state)
// would. It reports whether there was one.
func (a *AFTR) RemoveBinding(b4 netip.Addr) bool {
	ok, _ := a.pool.Release(b4)
	a.mu.Lock()
	delete(a.nonces, b4)
	a.mu.Unlock()
	if ok {
		a.log.Info("binding removed", "b4", b4)
	}
	return ok
}

// Counters returns every non-zero counter.
func (a *AFTR) Counters() map[string]uint64 { return a.count.Snapshot() }

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

func (a *AFTR) thirdPartyAllowed(client any) bool {
	c, ok := client.(netip.Addr)
	if !ok {
		return false
	}
	for _, p := range a.cfg.Provisioners {
		if p == c {
			return true
		}
	}
	return false
}
