// Package b4 is the lwB4 of RFC 7596: a NAPT44 into the public IPv4 address
// and port set that the AFTR's PCP server assigns (RFC 6887 MAP with
// PORT_SET, RFC 7753), IPv4-in-IPv6 encapsulation (RFC 2473) towards the
// AFTR, and the provisioning state machine that asks for, renews and — on an
// ICMPv6 1/5 from the AFTR, a failed Epoch check or an ANNOUNCE — asks again
// for that port set.
//
// B4 is a composition root: nat.Table translates, pcp.Client speaks PCP over
// a UDP socket of the B4's own gVisor stack at 192.0.0.2, dataplane.go moves
// packets, provision.go runs the state machine.
package b4

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lw4o6/lw4o6/b4/lanpcp"
	"github.com/lw4o6/lw4o6/b4/nat"
	"github.com/lw4o6/lw4o6/stack/counter"
	"github.com/lw4o6/lw4o6/stack/frag"
	"github.com/lw4o6/lw4o6/stack/netstack"
	"github.com/lw4o6/lw4o6/stack/pcp"
	"github.com/lw4o6/lw4o6/stack/portset"
)

// Link is where the B4 sends packets: whole IP datagrams. Send must not
// retain pkt after it returns and must not block.
type Link interface {
	Send(pkt []byte)
}

// Softwire addresses (RFC 6333 §5.7): the B4's PCP client speaks from
// 192.0.0.2 to the AFTR's PCP server at 192.0.0.1 inside the tunnel.
var (
	addrB4      = [4]byte{192, 0, 0, 2}
	addrAFTR4   = [4]byte{192, 0, 0, 1}
	pcpServerAP = netip.AddrPortFrom(netip.AddrFrom4(addrAFTR4), 5351)
)

// Status is what the B4 holds now.
type Status struct {
	Provisioned bool
	PublicIPv4  netip.Addr
	Ports       portset.Range
	Lifetime    time.Duration // granted
	Expires     time.Time
	Epoch       uint32 // the AFTR's PCP Epoch at the last answer
	// Provisionings counts successful (re)provisionings, renewals excluded.
	Provisionings int
	Counters      map[string]uint64
	NAT           nat.Stats
	// Pool is how full the port set is (implicit and explicit mappings).
	Pool nat.Fill
	// LANMappings are the explicit mappings (LAN PCP, NAT-PMP, forwards);
	// Forwards the static forwards as last installed; LANPCP the LAN
	// server's counters.
	LANMappings []lanpcp.Mapping
	Forwards    []lanpcp.ForwardStatus
	LANPCP      lanpcp.Stats
	// Sets lists every port set held: the first (PublicIPv4, Ports) and
	// those added under load (docs/port-sets.md, pool.go), with their use.
	Sets []SetStatus

	// Provisioning says how the B4 is provisioned: "pcp", or for a static
	// binding its Config.StaticSource ("dhcpv6" for RFC 7598 S46, else
	// "static").
	Provisioning string
}

// B4 is one lwB4 instance.
type B4 struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	addr6  [16]byte
	aftr6  [16]byte
	gw4    [4]byte
	nat    *nat.Table
	lanSrv *lanpcp.Server // nil: disabled
	stack  *netstack.Stack
	count  *counter.Set
	lan    Link
	access Link

	reasm   *frag.Reassembler6 // outer IPv6 from the AFTR (RFC 6333 §6.3)
	fragIDs frag.IDs
	natICMP refusalBucket // host unreachable for NAT refusals (natrefuse.go)

	provisioned atomic.Bool
	lost        chan string // reasons to provision again; buffered 1

	client atomic.Pointer[pcp.Client] // while Run runs: takes ANNOUNCEs
	group6 [16]byte                   // Config.AnnounceGroup; zero if none

	mu        sync.Mutex
	status    Status
	extraSets []SetStatus   // the pool loop's added sets (pool.go)
	poolLost  chan struct{} // lostBinding tells the pool loop; buffered 1
	change    chan struct{} // closed and replaced on every status change
}

// New builds a B4 that sends LAN-bound packets on lan and softwire packets
// on access. Call Run to provision it.
func New(cfg Config, lan, access Link) (*B4, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if lan == nil || access == nil {
		return nil, fmt.Errorf("%w: nil link", ErrConfig)
	}
	b := &B4{
		cfg:      cfg,
		log:      cfg.Logger,
		now:      cfg.Now,
		addr6:    cfg.Addr.As16(),
		aftr6:    cfg.AFTR.As16(),
		gw4:      cfg.Gateway.As4(),
		count:    counter.NewSet(counterNames...),
		lan:      lan,
		access:   access,
		lost:     make(chan string, 1),
		poolLost: make(chan struct{}, 1),
		// Bounded: fragments are rare and only the AFTR's count.
		reasm:   frag.NewReassembler6(frag.Config{Now: cfg.Now}),
		fragIDs: frag.RandomIDs(),
		change:  make(chan struct{}),
		group6:  announceGroup16(cfg.AnnounceGroup),
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.now == nil {
		b.now = time.Now
	}
	nc := cfg.NAT
	if nc.Now == nil {
		nc.Now = b.now
	}
	b.nat = nat.New(nc)
	b.newLANPCP()
	// The B4's own stack holds 192.0.0.2 only; what it sends goes straight
	// into the softwire, un-NATed (the AFTR answers PCP from 192.0.0.1).
	st, err := netstack.New(netstack.Options{
		Name:   "b4-self",
		MTU:    cfg.TunnelMTU,
		Addrs:  []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4(addrB4), 29)},
		Output: b.fromSelf,
		Logger: b.log,
	})
	if err != nil {
		return nil, err
	}
	b.stack = st
	return b, nil
}

// fromSelf tunnels what the B4's own stack sends (PCP to 192.0.0.1).
func (b *B4) fromSelf(pkt []byte) {
	if len(pkt) == 0 || pkt[0]>>4 != 4 {
		return // the stack has no IPv6 address; nothing to send
	}
	b.toAFTR(pkt)
}

// Status returns a snapshot of the B4's state.
func (b *B4) Status() Status {
	b.mu.Lock()
	s := b.status
	b.mu.Unlock()
	s.Counters = b.count.Snapshot()
	s.NAT = b.nat.Stats()
	b.lanStatus(&s)
	b.sets(&s)
	return s
}

// Changed returns a channel closed at the next status change.
func (b *B4) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.change
}

func (b *B4) setStatus(f func(*Status)) {
	b.mu.Lock()
	f(&b.status)
	close(b.change)
	b.change = make(chan struct{})
	b.mu.Unlock()
}

// lostBinding records that the AFTR no longer holds our binding: the port
// set is out of use at once (its packets would only be dropped upstream) and
// the provisioning loop is told to ask again. The NAT keeps its sessions:
// the request suggests the same address and set, and what still fits the
// set granted then survives (issue 11 item 3; nat.Table.SetExternal).
func (b *B4) lostBinding(why string) {
	if b.provisioned.Swap(false) {
		b.lanDeprovisioned()
		select {
		case b.poolLost <- struct{}{}:
		default:
		}
		b.count.Count(cReprovision, 0)
		b.setStatus(func(s *Status) { s.Provisioned = false })
		b.log.Warn("binding lost, provisioning again", "why", why)
	}
	select {
	case b.lost <- why:
	default:
	}
}

// Close releases the B4's own stack. Run must have returned.
func (b *B4) Close() { b.stack.Close() }

// AddPortForward maps an external port of the B4's set to a LAN host's
// port (an explicit, inbound mapping, as a LAN PCP MAP makes), drawing on
// the same pool as outbound flows. suggested 0 lets the B4 choose.
func (b *B4) AddPortForward(proto uint8, internal netip.AddrPort, suggested uint16, lifetime time.Duration) (uint16, error) {
	if !b.provisioned.Load() {
		return 0, ErrNotProvisioned
	}
	return b.nat.AddExplicit(proto, internal, suggested, lifetime)
}

// RemovePortForward deletes an explicit mapping.
func (b *B4) RemovePortForward(proto uint8, internal netip.AddrPort) error {
	_, err := b.nat.RemoveExplicit(proto, internal)
	return err
}

// ErrNotProvisioned is returned while the B4 holds no port set.
var ErrNotProvisioned = errors.New("b4: not provisioned")
