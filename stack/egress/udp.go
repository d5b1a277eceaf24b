package egress

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// udpDialTimeout bounds a HostDialer's "udp4" dial (the net package's is
// immediate: connect(2) on a UDP socket sends nothing).
const udpDialTimeout = 10 * time.Second

// udpBufSize holds the largest datagram either side can deliver (the stack
// reassembles fragments from the B4s; the host may send up to 65507 bytes).
const udpBufSize = 1 << 16

// handleUDP is the UDP transport handler for datagrams that match no flow yet.
// It runs on the packet path, so it only binds a gVisor endpoint to the flow's
// 4-tuple (which queues this first datagram) and leaves the host dial to the
// relay goroutine. It builds the ForwarderRequest itself on the stack's
// reference to pkt: udp.Forwarder.HandlePacket would leak a clone
// (GVISOR.md §5.1).
func (e *Egress) handleUDP(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
	if !e.reachable(destination(id).Addr()) {
		e.udp.failed.Add(1)
		return true // drop
	}
	if !e.relays.enter() {
		return true // closing: drop
	}
	var wq waiter.Queue
	ep, terr := udp.NewForwarderRequest(e.s.Stack, id, pkt).CreateEndpoint(&wq)
	if terr != nil {
		e.relays.leave()
		e.udp.failed.Add(1)
		e.log.Debug("egress: udp endpoint", "src", source(id), "dst", destination(id), "err", terr)
		return true
	}
	// gVisor's default PMTU strategy sets DF and leaves the IP ID 0, yet
	// still fragments datagrams over the MTU locally: every fragmented
	// reply from one server address to one B4 would carry ID 0, and two
	// of them in flight would be reassembled into garbage. Without DF the
	// stack draws a random ID (RFC 6864 §4.3).
	ep.SetSockOptInt(tcpip.MTUDiscoverOption, int(tcpip.PMTUDiscoveryDont))
	rl := &relay{in: gonet.NewUDPConn(&wq, ep)}
	if !e.relays.track(rl) {
		rl.close()
		e.relays.leave()
		return true
	}
	go e.relayUDP(rl, id)
	return true
}

// relayUDP dials the flow's host socket, then relays both ways until the flow
// has been idle for Config.UDPIdle (gvisor-tap-vsock #107: without a timer a
// UDP relay lives forever) or Close aborts it.
func (e *Egress) relayUDP(rl *relay, id stack.TransportEndpointID) {
	defer e.relays.leave()
	defer e.relays.untrack(rl)
	defer rl.close()
	dst, src := destination(id), source(id)

	ctx, cancel := context.WithTimeout(e.ctx, udpDialTimeout)
	out, err := e.dialer.DialContext(ctx, "udp4", dst.String())
	cancel()
	if err != nil {
		e.udp.failed.Add(1)
		e.log.Debug("egress: udp dial", "src", src, "dst", dst, "err", err)
		return
	}
	var expired atomic.Bool
	idle := newIdleTimer(e.cfg.UDPIdle, func() {
		expired.Store(true)
		rl.close()
	})
	rl.mu.Lock()
	rl.out = out
	rl.stop = idle.stop
	rl.mu.Unlock()
	if !e.relays.enter() { // Close began before rl.out was set
		idle.stop()
		out.Close()
		return
	}
	e.udp.open()
	defer e.udp.closed()
	e.log.Debug("egress: udp open", "src", src, "dst", dst, "host", out.LocalAddr())

	done := make(chan struct{})
	go func() {
		defer e.relays.leave()
		defer close(done)
		e.copyDatagrams(rl, out, rl.in, idle, &e.udp.bytesOut)
	}()
	e.copyDatagrams(rl, rl.in, out, idle, &e.udp.bytesIn)
	<-done
	if expired.Load() {
		e.udp.expired.Add(1)
		e.log.Debug("egress: udp idle", "src", src, "dst", dst)
	}
}

// copyDatagrams relays datagrams from src to dst until either fails, then
// closes the relay.
func (e *Egress) copyDatagrams(rl *relay, dst, src net.Conn, idle *idleTimer, count *atomic.Uint64) {
	defer rl.close()
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := (*bp)[:udpBufSize]
	for {
		n, err := src.Read(buf)
		if err != nil {
			// A connected UDP socket reports an ICMP port unreachable
			// from the host as ECONNREFUSED on the next read; the flow
			// stays open for the idle timer to decide.
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue
			}
			return
		}
		idle.touch()
		if _, err := dst.Write(buf[:n]); err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue
			}
			return
		}
		count.Add(uint64(n))
	}
}
