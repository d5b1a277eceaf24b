// Package socks5 is lw4o6's unprivileged LAN front end: a SOCKS5 server
// (RFC 1928, no authentication) whose outbound flows are opened by a Dialer,
// normally a userspace (gVisor) LAN host, so that they enter the B4 through
// its NAT like a real LAN host's. The package never dials with the net
// package itself; the only host sockets it opens are the client-facing UDP
// relay sockets of UDP ASSOCIATE.
//
// Supported: CONNECT with half-close relaying, UDP ASSOCIATE without
// fragmentation, ATYP IPv4, domain (with a Resolver) and IPv6 (with
// AllowIPv6). BIND is answered "command not supported".
//
//	srv := &socks5.Server{Dialer: lanHost, Resolver: lanResolver}
//	ln, _ := net.Listen("tcp", "127.0.0.1:1080")
//	go srv.Serve(ln)
//	defer srv.Close()
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
	"syscall"
	"time"
)

// Dialer opens the server's outbound flows.
type Dialer interface {
	// DialTCP opens a TCP connection to dst. It must return when ctx is
	// done.
	DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error)
	// ListenUDP opens an unconnected UDP socket for a UDP ASSOCIATE;
	// ReadFrom and WriteTo use *net.UDPAddr.
	ListenUDP(ctx context.Context) (net.PacketConn, error)
}

// Resolver resolves ATYP domain names (net.Resolver satisfies it). network
// is "ip4", or "ip" with Server.AllowIPv6.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// DefaultIdleTimeout is the idle timeout used when Server.IdleTimeout is 0.
const DefaultIdleTimeout = 5 * time.Minute

const (
	handshakeTimeout = 30 * time.Second // greeting and request
	connectTimeout   = 30 * time.Second // resolving and dialling a CONNECT
	replyTimeout     = 10 * time.Second // writing a reply
	resolveTimeout   = 10 * time.Second // one name lookup
	maxDialAddrs     = 8                // addresses of a name tried in turn
	lingerTimeout    = time.Second      // lingerClose
	lingerMax        = 64 << 10         // lingerClose
)

// ErrServerClosed is returned by Serve and ServeConn after Close.
var ErrServerClosed = errors.New("socks5: server closed")

// Server is a SOCKS5 server. The zero value with a Dialer is usable; fields
// must not change once serving has begun.
type Server struct {
	// Dialer opens outbound TCP connections and UDP sockets. Required.
	Dialer Dialer
	// Resolver resolves ATYP domain names. Nil refuses them with reply 0x08
	// (address type not supported), except for names that are IP literals.
	Resolver Resolver
	// Logger receives per-session debug records and accept errors; nil
	// discards them.
	Logger *slog.Logger
	// IdleTimeout ends a CONNECT session or UDP association after this long
	// with no data in either direction. 0 means DefaultIdleTimeout; a
	// negative value disables it.
	IdleTimeout time.Duration
	// AllowIPv6 lets clients use IPv6 destinations. Without it (the B4 only
	// carries IPv4) an ATYP IPv6 request gets reply 0x08 (address type not
	// supported), names resolve to IPv4 only, and UDP datagrams to IPv6
	// destinations are dropped. IPv4-mapped IPv6 addresses count as IPv4.
	AllowIPv6 bool

	mu        sync.Mutex
	closed    bool
	base      context.Context // cancelled by Close
	cancel    context.CancelFunc
	listeners map[*net.Listener]struct{}
	sessions  sync.WaitGroup
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return discard
}

var discard = slog.New(slog.DiscardHandler)

func (s *Server) idleTimeout() time.Duration {
	switch {
	case s.IdleTimeout == 0:
		return DefaultIdleTimeout
	case s.IdleTimeout < 0:
		return 0
	}
	return s.IdleTimeout
}

// initLocked sets up the base context. s.mu must be held.
func (s *Server) initLocked() {
	if s.base == nil {
		s.base, s.cancel = context.WithCancel(context.Background())
	}
}

// begin registers a session. The returned context ends with parent or Close;
// done must be called when the session has finished.
func (s *Server) begin(parent context.Context) (ctx context.Context, done func(), ok bool) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, nil, false
	}
	s.initLocked()
	s.sessions.Add(1)
	base := s.base
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(parent)
	stop := context.AfterFunc(base, cancel)
	return ctx, func() {
		stop()
		cancel()
		s.sessions.Done()
	}, true
}

// Serve accepts connections on ln and serves each in its own goroutine. It
// returns when ln fails or is closed (ErrServerClosed after Close), closing
// ln, without waiting for the sessions it started.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.initLocked()
	if s.listeners == nil {
		s.listeners = make(map[*net.Listener]struct{})
	}
	key := &ln
	s.listeners[key] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, key)
		s.mu.Unlock()
		ln.Close()
	}()

	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			if !temporary(err) {
				return err
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.logger().Warn("socks5: accept", "err", err, "retry", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-s.base.Done():
				t.Stop()
			}
			continue
		}
		delay = 0
		ctx, done, ok := s.begin(s.base)
		if !ok {
			c.Close()
			return ErrServerClosed
		}
		go func() {
			defer done()
			if err := s.serveConn(ctx, c); err != nil {
				s.logger().Debug("socks5: session", "client", addrString(c.RemoteAddr()), "err", err)
			}
		}()
	}
}

// temporary reports accept errors worth retrying.
func temporary(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// ServeConn serves one client connection until the session ends, ctx is
// done or the Server is closed, and closes c. It returns nil after a
// session that ended normally, otherwise why it ended (errors carry the
// reply code sent, if any).
func (s *Server) ServeConn(ctx context.Context, c net.Conn) error {
	ctx, done, ok := s.begin(ctx)
	if !ok {
		c.Close()
		return ErrServerClosed
	}
	defer done()
	return s.serveConn(ctx, c)
}

// Close stops all Serve loops, ends every active session and waits for the
// sessions to finish. Later Serve and ServeConn calls fail with
// ErrServerClosed.
func (s *Server) Close() error {
	s.mu.Lock()
	var err error
	if !s.closed {
		s.closed = true
		s.initLocked()
		s.cancel()
		for ln := range s.listeners {
			if e := (*ln).Close(); e != nil && err == nil && !errors.Is(e, net.ErrClosed) {
				err = e
			}
		}
	}
	s.mu.Unlock()
	s.sessions.Wait()
	return err
}

func (s *Server) serveConn(ctx context.Context, c net.Conn) (err error) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer func() {
		if ctx.Err() != nil && s.isClosed() {
			err = ErrServerClosed
		}
	}()

	c.SetDeadline(time.Now().Add(handshakeTimeout))
	req, err := s.handshake(c)
	if err == nil {
		c.SetDeadline(time.Time{}) // reply writes set their own
		log := s.logger().With("client", addrString(c.RemoteAddr()), "dst", req.dst.String())
		switch req.cmd {
		case cmdConnect:
			err = s.connect(ctx, c, req, log)
		case cmdUDPAssociate:
			err = s.associate(ctx, c, req, log)
		}
	}
	var re *replyError
	if errors.As(err, &re) || errors.Is(err, errNoMethod) {
		lingerClose(c)
	}
	return err
}

// lingerClose half-closes c after a failure reply and discards what the
// client still sends for a moment, so that unread request bytes do not make
// the kernel reset the connection and destroy the reply before the client
// reads it.
func lingerClose(c net.Conn) {
	cw, ok := c.(closeWriter)
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.SetReadDeadline(time.Now().Add(lingerTimeout))
	io.CopyN(io.Discard, c, lingerMax)
}

// handshake runs method negotiation and reads the request, answering
// failures itself. It returns only CONNECT and UDP ASSOCIATE requests.
func (s *Server) handshake(c net.Conn) (request, error) {
	var req request
	var buf [2 + 255 + 2]byte

	// Greeting: VER NMETHODS METHODS.
	if _, err := io.ReadFull(c, buf[:2]); err != nil {
		return req, fmt.Errorf("socks5: greeting: %w", err)
	}
	if buf[0] != version5 {
		return req, errVersion // not SOCKS5: nothing we can say
	}
	methods := buf[2 : 2+int(buf[1])]
	if _, err := io.ReadFull(c, methods); err != nil {
		return req, fmt.Errorf("socks5: greeting: %w", err)
	}
	method := byte(methodNoAcceptable)
	for _, m := range methods {
		if m == methodNoAuth {
			method = methodNoAuth
			break
		}
	}
	if _, err := c.Write([]byte{version5, method}); err != nil {
		return req, fmt.Errorf("socks5: method reply: %w", err)
	}
	if method == methodNoAcceptable {
		return req, errNoMethod
	}

	// Request: VER CMD RSV ATYP DST.ADDR DST.PORT.
	if _, err := io.ReadFull(c, buf[:4]); err != nil {
		return req, fmt.Errorf("socks5: request: %w", err)
	}
	ver, cmd, atyp := buf[0], buf[1], buf[3]
	if ver != version5 {
		return req, s.fail(c, repGeneralFailure, errVersion)
	}
	dst, err := readAddress(c, atyp, buf[:])
	switch {
	case errors.Is(err, errAddrType):
		return req, s.fail(c, repAddressNotSupported, err)
	case errors.Is(err, errEmptyName):
		return req, s.fail(c, repGeneralFailure, err)
	case err != nil:
		return req, fmt.Errorf("socks5: request: %w", err)
	}
	req = request{cmd: cmd, dst: dst}
	switch cmd {
	case cmdConnect, cmdUDPAssociate:
		return req, nil
	case cmdBind:
		return req, s.fail(c, repCommandNotSupported, fmt.Errorf("%w: BIND", errCommand))
	}
	return req, s.fail(c, repCommandNotSupported, fmt.Errorf("%w: 0x%02x", errCommand, cmd))
}

// fail sends a failure reply and returns the error that caused it.
func (s *Server) fail(c net.Conn, rep reply, err error) error {
	s.reply(c, rep, netip.AddrPort{})
	return failf(rep, err)
}

// reply sends VER REP RSV ATYP BND.ADDR BND.PORT.
func (s *Server) reply(c net.Conn, rep reply, bnd netip.AddrPort) error {
	b := make([]byte, 0, 4+16+2)
	b = append(b, version5, byte(rep), 0)
	b = appendAddrPort(b, bnd)
	c.SetWriteDeadline(time.Now().Add(replyTimeout))
	if _, err := c.Write(b); err != nil {
		return fmt.Errorf("socks5: reply: %w", err)
	}
	return nil
}

// resolve turns a destination into the addresses to try, or the reply code
// for why there are none.
func (s *Server) resolve(ctx context.Context, dst address) ([]netip.Addr, error) {
	if dst.name != "" {
		if ip, err := netip.ParseAddr(dst.name); err == nil && ip.Zone() == "" {
			dst.ip, dst.name = ip.Unmap(), ""
		}
	}
	if dst.name == "" {
		if dst.ip.Is6() && !s.AllowIPv6 {
			return nil, failf(repAddressNotSupported, errIPv6)
		}
		return []netip.Addr{dst.ip}, nil
	}
	if s.Resolver == nil {
		return nil, failf(repAddressNotSupported, errNoResolver)
	}
	network := "ip4"
	if s.AllowIPv6 {
		network = "ip"
	}
	rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	ips, err := s.Resolver.LookupNetIP(rctx, network, dst.name)
	if err != nil {
		return nil, failf(repHostUnreachable, fmt.Errorf("resolve %q: %w", dst.name, err))
	}
	out := make([]netip.Addr, 0, min(len(ips), maxDialAddrs))
	for _, ip := range ips {
		ip = ip.Unmap()
		if !ip.IsValid() || (ip.Is6() && !s.AllowIPv6) {
			continue
		}
		if out = append(out, ip); len(out) == maxDialAddrs {
			break
		}
	}
	if len(out) == 0 {
		return nil, failf(repHostUnreachable, fmt.Errorf("%w: %q", errNoAddress, dst.name))
	}
	return out, nil
}

// dial resolves dst and dials its addresses in turn.
func (s *Server) dial(ctx context.Context, dst address) (net.Conn, error) {
	if s.Dialer == nil {
		return nil, failf(repGeneralFailure, errNoDialer)
	}
	ips, err := s.resolve(ctx, dst)
	if err != nil {
		return nil, err
	}
	var last error
	for _, ip := range ips {
		conn, err := s.Dialer.DialTCP(ctx, netip.AddrPortFrom(ip, dst.port))
		if err == nil && conn == nil {
			err = errNilConn
		}
		if err == nil {
			return conn, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, failf(replyFor(last), last)
}

// connect serves a CONNECT request: dial, reply, relay.
func (s *Server) connect(ctx context.Context, c net.Conn, req request, log *slog.Logger) error {
	dctx, cancel := context.WithTimeout(ctx, connectTimeout)
	up, err := s.dial(dctx, req.dst)
	cancel()
	if err != nil {
		rep := replyFor(err)
		s.reply(c, rep, netip.AddrPort{})
		log.Debug("socks5: connect failed", "reply", rep.String(), "err", err)
		return err
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { up.Close() })
	defer stop()

	if err := s.reply(c, repSucceeded, addrPortOf(up.LocalAddr())); err != nil {
		return err
	}
	c.SetDeadline(time.Time{})
	log.Debug("socks5: connected", "bound", addrString(up.LocalAddr()))
	st := s.relay(c, up)
	log.Debug("socks5: connect done", "up", st.up, "down", st.down, "err", st.err)
	return st.err
}
