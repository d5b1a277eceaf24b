// Package sim is an in-memory IP network for tests, the lab and examples:
// ports joined by a router that forwards whole IP datagrams by longest-prefix
// match on the destination address, with IPv4 and IPv6 multicast flooded to
// every other port, an optional pcap tap, and hosts that are real gVisor
// stacks. Delivery is asynchronous (one queue and goroutine per port), as on
// a wire: a sender never re-enters a receiver's code on its own stack.
package sim

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/lw4o6/lw4o6/stack/pcap"
)

// queueLen is the depth of each port's receive queue. A full queue drops the
// packet, as a congested link does; TCP recovers.
const queueLen = 4096

// Network is a router joining ports.
type Network struct {
	name string

	mu     sync.RWMutex
	routes []route
	ports  []*Port
	tap    *pcap.Writer
	closed bool

	// Counters.
	Delivered, NoRoute, QueueDrops atomic.Uint64
}

type route struct {
	prefix netip.Prefix
	port   *Port
}

// NewNetwork returns an empty network.
func NewNetwork(name string) *Network { return &Network{name: name} }

// Name is the network's label.
func (n *Network) Name() string { return n.name }

// SetTap records every packet sent on the network (once, when sent) to w.
func (n *Network) SetTap(w *pcap.Writer) {
	n.mu.Lock()
	n.tap = w
	n.mu.Unlock()
}

// Port is one attachment to a Network.
type Port struct {
	net  *Network
	name string
	recv func(pkt []byte)
	q    chan []byte
	done chan struct{}
	once sync.Once
	// exited is closed when the port's goroutine has returned.
	exited chan struct{}
}

// ErrClosed is returned when attaching to a closed network.
var ErrClosed = errors.New("sim: network closed")

// Attach adds a port whose packets are handed to recv (which owns them) on
// the port's own goroutine, and routes prefixes to it.
func (n *Network) Attach(name string, recv func(pkt []byte), prefixes ...netip.Prefix) (*Port, error) {
	p := &Port{net: n, name: name, recv: recv, q: make(chan []byte, queueLen), done: make(chan struct{}), exited: make(chan struct{})}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	n.ports = append(n.ports, p)
	for _, pf := range prefixes {
		n.routes = append(n.routes, route{pf.Masked(), p})
	}
	go p.run()
	return p, nil
}

// AddRoute routes prefix to port p.
func (n *Network) AddRoute(prefix netip.Prefix, p *Port) {
	n.mu.Lock()
	n.routes = append(n.routes, route{prefix.Masked(), p})
	n.mu.Unlock()
}

// RemoveRoutes drops every route to p (a host leaving the network).
func (n *Network) RemoveRoutes(p *Port) {
	n.mu.Lock()
	defer n.mu.Unlock()
	rs := n.routes[:0]
	for _, r := range n.routes {
		if r.port != p {
			rs = append(rs, r)
		}
	}
	n.routes = rs
}

// Ports is the number of ports attached (and not detached).
func (n *Network) Ports() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return len(n.ports)
}

// Close stops every port's goroutine. Queued packets are discarded.
func (n *Network) Close() {
	n.mu.Lock()
	ports := n.ports
	n.closed = true
	n.mu.Unlock()
	for _, p := range ports {
		p.close()
	}
}

func (p *Port) run() {
	defer close(p.exited)
	for {
		select {
		case b := <-p.q:
			p.recv(b)
		case <-p.done:
			return
		}
	}
}

func (p *Port) close() { p.once.Do(func() { close(p.done) }) }

// Detach takes p off its network, as an unplugged cable: its routes go,
// multicast no longer reaches it, its queued packets are discarded and its
// goroutine has returned when Detach does (so recv is not running and will
// not run again). A node that comes and goes (the lab's B4s) detaches, or
// every port it ever had would keep a goroutine and a queue until the
// network closes. Detach must not be called from p's own recv; a detached
// port's Send still sends.
func (p *Port) Detach() {
	n := p.net
	n.mu.Lock()
	rs := n.routes[:0]
	for _, r := range n.routes {
		if r.port != p {
			rs = append(rs, r)
		}
	}
	clear(n.routes[len(rs):]) // no stale pointers to p past the end
	n.routes = rs
	n.ports = slices.DeleteFunc(n.ports, func(q *Port) bool { return q == p })
	n.mu.Unlock()
	p.close()
	<-p.exited
}

// Name is the port's label.
func (p *Port) Name() string { return p.name }

// Send copies pkt and forwards it by its destination address. It never
// blocks and never calls a receiver synchronously.
func (p *Port) Send(pkt []byte) {
	dst, ok := destination(pkt)
	if !ok {
		p.net.NoRoute.Add(1)
		return
	}
	n := p.net
	n.mu.RLock()
	tap := n.tap
	var targets []*Port
	if dst.IsMulticast() {
		for _, q := range n.ports {
			if q != p {
				targets = append(targets, q)
			}
		}
	} else if q := n.lookup(dst); q != nil {
		targets = []*Port{q}
	}
	n.mu.RUnlock()
	if tap != nil {
		tap.WritePacket(pkt)
	}
	if len(targets) == 0 {
		n.NoRoute.Add(1)
		return
	}
	for _, q := range targets {
		c := append([]byte(nil), pkt...)
		select {
		case q.q <- c:
			n.Delivered.Add(1)
		default:
			n.QueueDrops.Add(1)
		}
	}
}

// lookup is a longest-prefix match; the tables here are small.
func (n *Network) lookup(dst netip.Addr) *Port {
	var best *Port
	bits := -1
	for _, r := range n.routes {
		if r.prefix.Bits() > bits && r.prefix.Contains(dst) {
			best, bits = r.port, r.prefix.Bits()
		}
	}
	return best
}

func destination(b []byte) (netip.Addr, bool) {
	if len(b) < 1 {
		return netip.Addr{}, false
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom4([4]byte(b[16:20])), true
	case 6:
		if len(b) < 40 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16([16]byte(b[24:40])), true
	}
	return netip.Addr{}, false
}
