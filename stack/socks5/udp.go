package socks5

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

const (
	udpBufSize    = maxUDPHeader + 1<<16
	nameCacheSize = 64
	nameCacheTTL  = time.Minute
	nameCacheNeg  = 5 * time.Second // failed lookups
)

var udpBufs = sync.Pool{New: func() any { b := make([]byte, udpBufSize); return &b }}

// errControlClosed is the normal end of an association: the client closed
// the TCP control connection.
var errControlClosed = errors.New("socks5: control connection closed")

// association is one UDP ASSOCIATE (RFC 1928 §7): a client-facing relay
// socket on the host and an outbound socket from the Dialer.
type association struct {
	s          *Server
	log        *slog.Logger
	ctrl       net.Conn
	relay      *net.UDPConn   // client side, on the host
	up         net.PacketConn // destination side, from the Dialer
	clientIP   netip.Addr     // the only source accepted (no zone)
	clientPort uint16         // the only source port accepted, if non-zero
	client     atomic.Pointer[netip.AddrPort]
	act        *activity
	names      map[string]nameEntry // only the client→destination goroutine

	fromClient, toClient, dropped atomic.Int64
}

type nameEntry struct {
	ip      netip.Addr // invalid: lookup failed
	expires time.Time
}

// associate serves a UDP ASSOCIATE request.
func (s *Server) associate(ctx context.Context, c net.Conn, req request, log *slog.Logger) error {
	if s.Dialer == nil {
		return s.fail(c, repGeneralFailure, errNoDialer)
	}
	// The client's address is the control connection's peer; for a transport
	// without IP addresses, the request's address or else loopback.
	clientIP := addrPortOf(c.RemoteAddr()).Addr()
	if !clientIP.IsValid() {
		clientIP = req.dst.ip
		if !clientIP.IsValid() || clientIP.IsUnspecified() {
			clientIP = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
	}
	clientIP = clientIP.WithZone("")
	// The relay listens on the interface the client reached us on.
	local := addrPortOf(c.LocalAddr()).Addr()
	if !local.IsValid() || local.IsUnspecified() {
		local = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		if clientIP.Is6() {
			local = netip.IPv6Loopback()
		}
	}

	uctx, cancel := context.WithTimeout(ctx, connectTimeout)
	up, err := s.Dialer.ListenUDP(uctx)
	cancel()
	if err == nil && up == nil {
		err = errNilConn
	}
	if err != nil {
		return s.fail(c, replyFor(err), fmt.Errorf("outbound UDP socket: %w", err))
	}
	relay, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil {
		up.Close()
		return s.fail(c, repGeneralFailure, fmt.Errorf("UDP relay socket: %w", err))
	}
	a := &association{
		s: s, log: log, ctrl: c, relay: relay, up: up,
		clientIP: clientIP, clientPort: req.dst.port,
		act: newActivity(), names: make(map[string]nameEntry),
	}
	if a.clientPort != 0 {
		ap := netip.AddrPortFrom(clientIP, a.clientPort)
		a.client.Store(&ap)
	}
	bnd := addrPortOf(relay.LocalAddr())
	if err := s.reply(c, repSucceeded, bnd); err != nil {
		relay.Close()
		up.Close()
		return err
	}
	c.SetDeadline(time.Time{})
	log.Debug("socks5: UDP associate", "relay", bnd.String(), "outbound", addrString(up.LocalAddr()))
	err = a.run(ctx)
	log.Debug("socks5: UDP associate done", "from_client", a.fromClient.Load(), "to_client", a.toClient.Load(),
		"dropped", a.dropped.Load(), "err", err)
	return err
}

// run relays until the control connection closes, a socket fails, the
// association is idle for the idle timeout or ctx is done.
func (a *association) run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	closeAll := func() {
		a.relay.Close()
		a.up.Close()
		a.ctrl.Close()
	}
	stop := context.AfterFunc(ctx, closeAll)
	defer stop()
	a.act.touch()
	wd := a.act.watch(a.s.idleTimeout(), func() { cancel(errIdle) })
	defer wd.stop()

	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); cancel(a.watchControl()) }()
	go func() { defer wg.Done(); cancel(a.clientToDestination(ctx)) }()
	go func() { defer wg.Done(); cancel(a.destinationToClient()) }()
	wg.Wait()
	closeAll()

	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errControlClosed):
		return nil
	case errors.Is(cause, context.Canceled), errors.Is(cause, context.DeadlineExceeded):
		return ctx.Err()
	default:
		return cause
	}
}

// watchControl reads and discards the control connection until it ends.
func (a *association) watchControl() error {
	var b [256]byte
	for {
		if _, err := a.ctrl.Read(b[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return errControlClosed
			}
			return fmt.Errorf("socks5: control connection: %w", err)
		}
	}
}

func (a *association) clientToDestination(ctx context.Context) error {
	bp := udpBufs.Get().(*[]byte)
	defer udpBufs.Put(bp)
	buf := *bp
	for {
		n, src, err := a.relay.ReadFromUDPAddrPort(buf)
		if err != nil {
			return fmt.Errorf("socks5: UDP relay read: %w", err)
		}
		if !a.forward(ctx, buf[:n], src) {
			a.dropped.Add(1)
		}
	}
}

// forward sends one client datagram on, reporting whether it was accepted.
func (a *association) forward(ctx context.Context, b []byte, src netip.AddrPort) bool {
	src = netip.AddrPortFrom(src.Addr().Unmap().WithZone(""), src.Port())
	if src.Addr() != a.clientIP || (a.clientPort != 0 && src.Port() != a.clientPort) {
		return false
	}
	frag, dst, payload, err := parseUDPHeader(b)
	if err != nil || frag != 0 { // no fragmentation support: drop
		return false
	}
	ip, ok := a.destination(ctx, dst)
	if !ok {
		return false
	}
	// Replies go to the latest accepted source.
	if cur := a.client.Load(); cur == nil || *cur != src {
		a.client.Store(&src)
	}
	if _, err := a.up.WriteTo(payload, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, dst.port))); err != nil {
		a.log.Debug("socks5: UDP send", "dst", dst.String(), "err", err)
		return false
	}
	a.act.touch()
	a.fromClient.Add(1)
	return true
}

// destination resolves a datagram's destination, caching names.
func (a *association) destination(ctx context.Context, dst address) (netip.Addr, bool) {
	if dst.name == "" {
		if dst.ip.Is6() && !a.s.AllowIPv6 {
			return netip.Addr{}, false
		}
		return dst.ip, true
	}
	now := time.Now()
	if e, ok := a.names[dst.name]; ok && now.Before(e.expires) {
		return e.ip, e.ip.IsValid()
	}
	e := nameEntry{expires: now.Add(nameCacheNeg)}
	if ips, err := a.s.resolve(ctx, dst); err == nil {
		e = nameEntry{ip: ips[0], expires: now.Add(nameCacheTTL)}
	} else {
		a.log.Debug("socks5: UDP resolve", "name", dst.name, "err", err)
	}
	if len(a.names) >= nameCacheSize {
		clear(a.names)
	}
	a.names[dst.name] = e
	return e.ip, e.ip.IsValid()
}

func (a *association) destinationToClient() error {
	bp := udpBufs.Get().(*[]byte)
	defer udpBufs.Put(bp)
	buf := *bp
	for {
		n, from, err := a.up.ReadFrom(buf[maxUDPHeader:])
		if err != nil {
			return fmt.Errorf("socks5: UDP outbound read: %w", err)
		}
		src := addrPortOf(from)
		client := a.client.Load()
		if !src.IsValid() || client == nil {
			a.dropped.Add(1)
			continue
		}
		start := maxUDPHeader - udpHeaderLen(src)
		hdr := append(buf[start:start], 0, 0, 0) // RSV, FRAG
		appendAddrPort(hdr, src)
		if _, err := a.relay.WriteToUDPAddrPort(buf[start:maxUDPHeader+n], *client); err != nil {
			a.log.Debug("socks5: UDP relay send", "client", client.String(), "err", err)
			a.dropped.Add(1)
			continue
		}
		a.act.touch()
		a.toClient.Add(1)
	}
}
