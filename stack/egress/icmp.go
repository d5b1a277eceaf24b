package egress

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Limits of the ping relay.
const (
	// maxPingFlows bounds the host ICMP sockets open at once.
	maxPingFlows = 4096
	// pingQueue is how many echo requests of one flow may wait for the
	// host socket; more are dropped, as a router's queue would.
	pingQueue = 64
	// replyTTL is the TTL of the echo replies the egress builds.
	replyTTL = 64
	// pingRetry is how long echo requests are dropped without asking the
	// host again after it refused a ping socket: a refusal is host-wide
	// (net.ipv4.ping_group_range), and the B4s must not make the egress
	// call socket(2) for every request.
	pingRetry = 10 * time.Second
)

// pingKey names a ping flow: the B4-side sender, the destination, and the
// sender's echo identifier (which the kernel replaces with the socket's own
// on the host side, so it is restored from the key on the way back).
type pingKey struct {
	src, dst [4]byte
	id       uint16
}

// handleICMP is the ICMPv4 default handler. gVisor hands it the echo
// requests that no endpoint took, after reassembly and IP option
// processing; returning true suppresses gVisor's own reply (which it never
// sends for promiscuous addresses anyway, GVISOR.md §5.3). Other ICMP
// messages are left to the stack.
func (e *Egress) handleICMP(_ stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
	h := header.ICMPv4(pkt.TransportHeader().Slice())
	if len(h) < header.ICMPv4MinimumSize || h.Type() != header.ICMPv4Echo || h.Code() != 0 {
		return false
	}
	e.echo.requests.Add(1)
	v := stack.PayloadSince(pkt.TransportHeader())
	msg := append([]byte(nil), v.AsSlice()...)
	v.Release()
	// gVisor passes echo requests with a bad checksum to handlers too.
	if checksum.Checksum(msg, 0) != 0xffff {
		e.echo.invalid.Add(1)
		return true
	}
	ip := header.IPv4(pkt.NetworkHeader().Slice())
	dst := ip.DestinationAddress().As4()
	if !e.cfg.Ping || !e.reachable(netip.AddrFrom4(dst)) || time.Now().UnixNano() < e.pingDownUntil.Load() {
		e.echo.dropped.Add(1)
		return true
	}
	tos, _ := ip.TOS()
	k := pingKey{src: ip.SourceAddress().As4(), dst: dst, id: h.Ident()}
	e.echoRequest(k, tos, msg)
	return true
}

// echoRequest queues msg, a whole ICMP echo request, on its flow, opening the
// flow if needed. It runs on the packet path and does not block.
func (e *Egress) echoRequest(k pingKey, tos uint8, msg []byte) {
	e.pingMu.Lock()
	f := e.pingFlows[k]
	if f == nil {
		if len(e.pingFlows) >= maxPingFlows || !e.relays.enter() {
			e.pingMu.Unlock()
			e.echo.dropped.Add(1)
			return
		}
		f = &pingFlow{e: e, key: k, q: make(chan []byte, pingQueue), done: make(chan struct{})}
		f.startTimer()
		if !e.relays.track(f) {
			e.pingMu.Unlock()
			e.relays.leave()
			f.close()
			e.echo.dropped.Add(1)
			return
		}
		e.pingFlows[k] = f
		go f.run()
	}
	e.pingMu.Unlock()
	f.tos.Store(uint32(tos))
	select {
	case f.q <- msg:
	default:
		e.echo.dropped.Add(1)
	}
}

// pingFlow relays one (src, dst, id) echo flow through one host ping socket.
type pingFlow struct {
	e    *Egress
	key  pingKey
	q    chan []byte
	done chan struct{}
	once sync.Once
	tos  atomic.Uint32

	idle *idleTimer // touched by every echo relayed either way

	mu     sync.Mutex
	conn   net.PacketConn
	closed bool
}

func (f *pingFlow) startTimer() {
	f.idle = newIdleTimer(f.e.cfg.UDPIdle, func() {
		f.e.ping.expired.Add(1)
		f.close()
	})
}

// close ends the flow: it leaves the table, its socket closes (ending the
// reader) and done closes (ending the writer).
func (f *pingFlow) close() {
	f.once.Do(func() {
		f.mu.Lock()
		f.closed = true
		f.idle.stop()
		conn := f.conn
		f.mu.Unlock()
		close(f.done)
		if conn != nil {
			conn.Close()
		}
		f.e.pingMu.Lock()
		if f.e.pingFlows[f.key] == f {
			delete(f.e.pingFlows, f.key)
		}
		f.e.pingMu.Unlock()
		f.e.relays.untrack(f)
	})
}

// run opens the host socket and writes the queued requests to it.
func (f *pingFlow) run() {
	e := f.e
	defer e.relays.leave()
	conn, err := e.dialer.ListenPacket(e.ctx, NetworkPing4, "")
	if err != nil {
		e.pingDownUntil.Store(time.Now().Add(pingRetry).UnixNano())
		e.ping.failed.Add(1)
		e.log.Debug("egress: ping socket", "dst", net.IP(f.key.dst[:]), "err", err)
		f.close()
		for {
			select {
			case <-f.q:
				e.echo.dropped.Add(1)
			default:
				return
			}
		}
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		conn.Close()
		return
	}
	f.conn = conn
	f.mu.Unlock()
	if !e.relays.enter() {
		return // Close is closing the flow, and conn with it
	}
	e.ping.open()
	defer e.ping.closed()
	go func() {
		defer e.relays.leave()
		defer f.close()
		f.read(conn)
	}()

	dst := &net.UDPAddr{IP: net.IP(f.key.dst[:])}
	for {
		select {
		case msg := <-f.q:
			if _, err := conn.WriteTo(msg, dst); err != nil {
				e.echo.dropped.Add(1)
				e.log.Debug("egress: ping write", "dst", dst, "err", err)
				continue
			}
			e.ping.bytesOut.Add(uint64(len(msg) - header.ICMPv4MinimumSize))
		case <-f.done:
			return
		}
	}
}

// read turns the host's echo replies into IPv4 echo replies to the B4-side
// sender until the socket closes.
func (f *pingFlow) read(conn net.PacketConn) {
	e := f.e
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		// The kernel matches replies to the socket by identifier only.
		if ua, ok := from.(*net.UDPAddr); !ok || !ua.IP.Equal(net.IP(f.key.dst[:])) {
			continue
		}
		m := header.ICMPv4(buf[:n])
		if n < header.ICMPv4MinimumSize || m.Type() != header.ICMPv4EchoReply {
			continue
		}
		f.idle.touch()
		e.ping.bytesIn.Add(uint64(n - header.ICMPv4MinimumSize))
		for _, p := range echoReply(f.key, uint8(f.tos.Load()), uint16(e.ipID.Add(1)), m.Sequence(), m.Payload(), int(e.cfg.MTU)) {
			e.cfg.Output(p)
		}
		e.echo.replies.Add(1)
	}
}

// echoReply builds the IPv4 echo reply to k's sender, from k's destination,
// carrying data; fragmented to mtu if it does not fit (RFC 792 lets the
// reply be as big as the request, and the stack reassembled that).
func echoReply(k pingKey, tos uint8, ipID, seq uint16, data []byte, mtu int) [][]byte {
	msg := make([]byte, header.ICMPv4MinimumSize+len(data))
	m := header.ICMPv4(msg)
	m.SetType(header.ICMPv4EchoReply)
	m.SetIdent(k.id)
	m.SetSequence(seq)
	copy(msg[header.ICMPv4MinimumSize:], data)
	m.SetChecksum(^checksum.Checksum(msg, 0))
	return ipv4Datagrams(k.dst, k.src, tos, ipID, header.ICMPv4ProtocolNumber, msg, mtu)
}

// ipv4Datagrams wraps payload in IPv4 headers (no options), fragmenting it
// to mtu per RFC 791 when it does not fit.
func ipv4Datagrams(src, dst [4]byte, tos uint8, ipID uint16, proto tcpip.TransportProtocolNumber, payload []byte, mtu int) [][]byte {
	const hl = header.IPv4MinimumSize
	chunk := len(payload)
	if hl+chunk > mtu {
		chunk = (mtu - hl) &^ 7
	}
	if chunk <= 0 {
		return nil
	}
	var pkts [][]byte
	for off := 0; off < len(payload); off += chunk {
		end := min(off+chunk, len(payload))
		var flags uint8
		if end < len(payload) {
			flags = header.IPv4FlagMoreFragments
		}
		b := make([]byte, hl+end-off)
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{
			TOS:            tos,
			TotalLength:    uint16(len(b)),
			ID:             ipID,
			Flags:          flags,
			FragmentOffset: uint16(off),
			TTL:            replyTTL,
			Protocol:       uint8(proto),
			SrcAddr:        tcpip.AddrFrom4(src),
			DstAddr:        tcpip.AddrFrom4(dst),
		})
		ip.SetChecksum(^ip.CalculateChecksum())
		copy(b[hl:], payload[off:end])
		pkts = append(pkts, b)
	}
	return pkts
}
