package pcp

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// ClientIP fills the PCP Client's IP Address field; the zero Addr uses
	// the connection's local address, as RFC 6887 §16.4 recommends.
	ClientIP netip.Addr
	// Nonce is the Mapping Nonce of every request; nil draws one from
	// crypto/rand (§11.2). A B4 persists it so that its renewals after a
	// restart are not refused (PROTOCOL.md §8 item 6).
	Nonce  *[NonceLen]byte
	Clock  Clock        // nil = real time
	Rand   Rand         // jitter source; nil = math/rand/v2
	Logger *slog.Logger // nil = discard
	// OnStateLoss is called when the server probably lost state: an Epoch
	// check failed on a response (§8.5), or an ANNOUNCE came with an
	// out-of-range Epoch, after a random wait of 0-5 s (§14.1.3). It runs
	// on a goroutine of Run, at most one at a time, and should start the
	// renewals and return; Run waits for it before returning.
	OnStateLoss func()
}

// Client is a PCP client bound to one server through a connected UDP
// socket. Run must be running for requests to be answered. It is safe for
// concurrent use.
type Client struct {
	conn        net.Conn
	clientIP    netip.Addr
	nonce       [NonceLen]byte
	clock       Clock
	log         *slog.Logger
	onStateLoss func()
	origin      time.Time // zero of the client seconds used by the Epoch check
	stopped     chan struct{}

	rndMu sync.Mutex
	rnd   Rand

	mu          sync.Mutex
	pending     map[*pending]struct{}
	holds       holds
	live        map[liveKey]time.Time // mappings granted, by expiry
	epoch       epochCheck
	ran         bool
	loopCtx     context.Context // set while Run runs
	lossPending bool
	wg          sync.WaitGroup // state-loss goroutines
}

// liveKey names a mapping for the NO_RESOURCES rule (§11.4).
type liveKey struct {
	protocol     uint8
	internalPort uint16
	thirdParty   netip.Addr
}

// pending is a request waiting for its response.
type pending struct {
	opcode Opcode
	match  func(*Message) bool
	ch     chan reply
}

type reply struct {
	m   *Message
	err *ResultError // UNSUPP_VERSION that could not be matched further (§9)
}

// NewClient returns a client that talks to the server conn is connected
// to. The caller owns conn and closes it.
func NewClient(conn net.Conn, cfg ClientConfig) *Client {
	c := &Client{
		conn:        conn,
		clientIP:    cfg.ClientIP.Unmap().WithZone(""),
		clock:       cfg.Clock,
		rnd:         cfg.Rand,
		log:         cfg.Logger,
		onStateLoss: cfg.OnStateLoss,
		stopped:     make(chan struct{}),
		pending:     make(map[*pending]struct{}),
		live:        make(map[liveKey]time.Time),
	}
	if c.clock == nil {
		c.clock = realClock{}
	}
	if c.rnd == nil {
		c.rnd = globalRand{}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Nonce != nil {
		c.nonce = *cfg.Nonce
	} else {
		rand.Read(c.nonce[:]) // never fails (crypto/rand, Go 1.24+)
	}
	if !c.clientIP.IsValid() {
		c.clientIP = localIP(conn)
		if !c.clientIP.IsValid() {
			c.log.Warn("pcp: no client address; the server will answer ADDRESS_MISMATCH")
		}
	}
	c.origin = c.clock.Now()
	return c
}

func localIP(conn net.Conn) netip.Addr {
	switch a := conn.LocalAddr().(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap().WithZone("")
	case nil:
		return netip.Addr{}
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}
		}
		return ap.Addr().Unmap().WithZone("")
	}
}

// Nonce is the Mapping Nonce the client sends; persist it to keep
// renewing the same mappings after a restart.
func (c *Client) Nonce() [NonceLen]byte { return c.nonce }

// ClientIP is the address written in the Client IP field.
func (c *Client) ClientIP() netip.Addr { return c.clientIP }

// Run reads responses until ctx is done or the connection fails, and
// returns why. It may be called once.
func (c *Client) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.ran {
		c.mu.Unlock()
		return errors.New("pcp: Client.Run called twice")
	}
	c.ran = true
	loopCtx, cancel := context.WithCancel(ctx)
	c.loopCtx = loopCtx
	c.mu.Unlock()

	// A blocked Read only returns for a deadline or a close.
	stop := context.AfterFunc(loopCtx, func() { c.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer func() {
		stop()
		cancel()
		c.mu.Lock()
		c.loopCtx = nil
		c.mu.Unlock()
		close(c.stopped) // before Wait: an OnStateLoss blocked in Map gets ErrStopped
		c.wg.Wait()
	}()

	buf := make([]byte, MaxMessageLen+1) // one more octet shows an oversize datagram
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				// ICMP port unreachable on a connected socket: no server yet;
				// retransmission carries on (§8.1.1).
				continue
			}
			return err
		}
		c.Input(buf[:n])
	}
}
