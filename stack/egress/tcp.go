package egress

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// tcpDialTimeout bounds a host dial; the B4's SYN retransmissions are
// absorbed by the forwarder meanwhile. Linux gives up after about 2 minutes;
// a B4 user does not wait that long.
const tcpDialTimeout = 30 * time.Second

// copyBufSize is the relays' buffer size; gonet.TCPConn has no
// ReadFrom/WriteTo, so io.Copy would allocate 32 KiB per direction per flow.
const copyBufSize = 64 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// destination is the flow's original destination, the address the B4 sent to.
func destination(id stack.TransportEndpointID) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4(id.LocalAddress.As4()), id.LocalPort)
}

func source(id stack.TransportEndpointID) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4(id.RemoteAddress.As4()), id.RemotePort)
}

// reachable reports whether the egress relays flows to a: only unicast
// addresses that can be on the Internet. A B4 must not reach the host's
// loopback services or link-local ones such as the cloud metadata service
// at 169.254.169.254 through the host's sockets; "this network" (0/8,
// RFC 1122 §3.2.1.3) and the broadcast address are never destinations.
func reachable(a netip.Addr) bool {
	return a.IsGlobalUnicast() && a.As4()[0] != 0
}

// reachable is the package rule, widened to loopback when configured.
func (e *Egress) reachable(a netip.Addr) bool {
	return reachable(a) || (e.cfg.AllowLoopback && a.IsLoopback())
}

// handleTCP runs on the forwarder's goroutine, one per SYN. It dials the host
// first, so that a refused or unreachable destination becomes an RST to the
// B4 instead of an accepted connection that closes at once (tailscale,
// gvisor-tap-vsock), then completes the handshake and relays on this
// goroutine. Complete is called exactly once on every path.
func (e *Egress) handleTCP(r *tcp.ForwarderRequest) {
	if !e.relays.enter() {
		r.Complete(true)
		return
	}
	defer e.relays.leave()
	id := r.ID()
	dst, src := destination(id), source(id)

	if !e.reachable(dst.Addr()) {
		e.tcp.failed.Add(1)
		r.Complete(true)
		return
	}
	ctx, cancel := context.WithTimeout(e.ctx, tcpDialTimeout)
	out, err := e.dialer.DialContext(ctx, "tcp4", dst.String())
	cancel()
	if err != nil {
		e.tcp.failed.Add(1)
		e.log.Debug("egress: tcp dial", "src", src, "dst", dst, "err", err)
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		// The B4 gave up or reset meanwhile.
		e.tcp.failed.Add(1)
		e.log.Debug("egress: tcp handshake", "src", src, "dst", dst, "err", terr)
		r.Complete(true)
		out.Close()
		return
	}
	r.Complete(false)
	setKeepalive(ep)

	rl := &relay{in: gonet.NewTCPConn(&wq, ep), out: out}
	if !e.relays.track(rl) {
		rl.close()
		return
	}
	defer e.relays.untrack(rl)
	e.tcp.open()
	defer e.tcp.closed()
	e.log.Debug("egress: tcp open", "src", src, "dst", dst, "host", out.LocalAddr())

	done := make(chan struct{})
	if !e.relays.enter() {
		rl.close()
		return
	}
	go func() {
		defer e.relays.leave()
		defer close(done)
		copyHalf(rl, out, rl.in, &e.tcp.bytesOut)
	}()
	copyHalf(rl, rl.in, out, &e.tcp.bytesIn)
	<-done
	rl.close()
}

// setKeepalive probes a silent B4 so that a relay whose B4 vanished is freed
// (GVISOR.md §5.5; tun2socks core/tcp.go sets the same options).
func setKeepalive(ep tcpip.Endpoint) {
	ep.SocketOptions().SetKeepAlive(true)
	idle := tcpip.KeepaliveIdleOption(keepaliveIdle)
	ep.SetSockOpt(&idle)
	intvl := tcpip.KeepaliveIntervalOption(keepaliveInterval)
	ep.SetSockOpt(&intvl)
	ep.SetSockOptInt(tcpip.KeepaliveCountOption, keepaliveCount)
}

type closeWriter interface{ CloseWrite() error }

// copyHalf copies one direction. At EOF it half-closes dst, so each side's
// FIN travels through and the other direction keeps going; on an error it
// closes the whole relay, which unblocks the other direction.
func copyHalf(rl *relay, dst, src net.Conn, count *atomic.Uint64) {
	bp := copyBufs.Get().(*[]byte)
	_, err := io.CopyBuffer(countingWriter{dst, count}, readerOnly{src}, *bp)
	copyBufs.Put(bp)
	if err != nil {
		rl.close()
		return
	}
	if cw, ok := dst.(closeWriter); ok {
		cw.CloseWrite()
	}
}

// countingWriter hides dst's ReadFrom (the host *net.TCPConn's would fall
// back to an unpooled io.Copy) and counts the bytes written.
type countingWriter struct {
	w net.Conn
	n *atomic.Uint64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(uint64(n))
	return n, err
}

// readerOnly hides src's WriteTo so io.CopyBuffer uses the pooled buffer.
type readerOnly struct{ io.Reader }
