package dhcp6

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
)

// Transmission parameters for Information-Request (RFC 8415 §7.6).
const (
	InfMaxDelay = 1 * time.Second    // INF_MAX_DELAY
	InfTimeout  = 1 * time.Second    // INF_TIMEOUT, the IRT
	InfMaxRT    = 3600 * time.Second // INF_MAX_RT, the MRT
)

// AllServers is All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1), port 547.
const AllServers = "ff02::1:2"

// Client asks a DHCPv6 server for the B4's configuration.
type Client struct {
	// Conn is the client's socket on the access link (UDP port 546 in a
	// deployment; any port where the server answers the source port, as
	// in tests). The caller owns it.
	Conn net.PacketConn
	// Server is where requests go: [ff02::1:2%IF]:547 on the access link.
	Server net.Addr
	// ClientID is the DUID sent in OPTION_CLIENTID; nil sends none (RFC
	// 8415 §18.2.6 allows that; Kea and most servers accept it).
	ClientID dhcpv6.DUID
	// IRT, MRT and MaxDelay are the RFC 8415 §15 and §18.2.6 parameters;
	// zero means INF_TIMEOUT, INF_MAX_RT and INF_MAX_DELAY. Tests shorten
	// them.
	IRT, MRT, MaxDelay time.Duration
	// Logger receives what was refused and why; nil discards it.
	Logger *slog.Logger
}

// Ask sends an Information-Request with an ORO for AFTR-Name, DNS servers,
// S46_CONT_LW and the Information Refresh Time, retransmitted per RFC 8415
// §15 until a valid Reply comes or ctx ends: Information-Request has no
// MRC or MRD (§18.2.6), so ctx is the bound. Replies that are not ours or
// that fail validation are logged and ignored, and the wait goes on (§16.10).
func (c *Client) Ask(ctx context.Context) (Info, error) {
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	irt, mrt, delay := or(c.IRT, InfTimeout), or(c.MRT, InfMaxRT), or(c.MaxDelay, InfMaxDelay)
	var xid [3]byte
	if _, err := rand.Read(xid[:]); err != nil {
		return Info{}, err
	}
	var cid []byte
	mods := []dhcpv6.Modifier{
		dhcpv6.WithRequestedOptions(OptAFTRName, OptDNSServers, OptS46ContLW, OptRefreshTime),
	}
	if c.ClientID != nil {
		mods = append(mods, dhcpv6.WithClientID(c.ClientID))
		cid = c.ClientID.ToBytes()
	}
	msg, err := dhcpv6.NewMessage(mods...)
	if err != nil {
		return Info{}, err
	}
	msg.MessageType = dhcpv6.MessageTypeInformationRequest
	msg.TransactionID = dhcpv6.TransactionID(xid)

	// RFC 8415 §18.2.6: the first Information-Request waits a random
	// 0..INF_MAX_DELAY, so that clients started together do not all send
	// at once.
	if err := sleep(ctx, time.Duration(mrand.Int64N(int64(delay)+1))); err != nil {
		return Info{}, err
	}
	buf := make([]byte, 65536)
	start := time.Now()
	var rt time.Duration
	for tries := 1; ; tries++ {
		// RFC 8415 §15: RT = IRT + RAND*IRT, then 2*RTprev + RAND*RTprev,
		// and past MRT, MRT + RAND*MRT; RAND uniform in [-0.1, +0.1].
		if rt == 0 {
			rt = irt + jitter(irt)
		} else {
			rt = 2*rt + jitter(rt)
		}
		if rt > mrt {
			rt = mrt + jitter(mrt)
		}
		// Elapsed Time is in every message, in hundredths of a second,
		// 0xffff past 655.34 s (RFC 8415 §21.9).
		msg.UpdateOption(dhcpv6.OptElapsedTime(min(time.Since(start), 65535*10*time.Millisecond)))
		if _, err := c.Conn.WriteTo(msg.ToBytes(), c.Server); err != nil {
			log.Warn("DHCPv6 Information-Request not sent", "to", c.Server, "err", err, "retry-in", rt)
		} else if tries > 1 && tries&(tries-1) == 0 {
			log.Info("no DHCPv6 Reply yet, asking again", "to", c.Server, "try", tries, "next-wait", rt)
		} else {
			log.Debug("DHCPv6 Information-Request sent", "to", c.Server, "try", tries, "xid", fmt.Sprintf("%x", xid))
		}
		deadline := time.Now().Add(rt)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		for {
			info, err := c.read(ctx, buf, deadline, xid, cid)
			if err == nil {
				return info, nil
			}
			if ctx.Err() != nil {
				return Info{}, fmt.Errorf("dhcp6: no valid Reply from %v after %d Information-Requests: %w", c.Server, tries, ctx.Err())
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if errors.Is(err, ErrReply) {
				log.Warn("DHCPv6 message ignored", "err", err)
				continue
			}
			// A socket error: wait out the interval, then send again.
			log.Warn("DHCPv6 socket", "err", err)
			if err := sleep(ctx, time.Until(deadline)); err != nil {
				return Info{}, fmt.Errorf("dhcp6: no valid Reply from %v after %d Information-Requests: %w", c.Server, tries, err)
			}
			break
		}
	}
}

// read waits for one datagram until deadline (or ctx) and parses it.
func (c *Client) read(ctx context.Context, buf []byte, deadline time.Time, xid [3]byte, cid []byte) (Info, error) {
	c.Conn.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.Conn.SetReadDeadline(time.Now()) })
	defer stop()
	n, _, err := c.Conn.ReadFrom(buf)
	if err != nil {
		return Info{}, err
	}
	return ParseReply(buf[:n], xid, cid)
}

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// jitter is RAND*d with RAND uniform in [-0.1, +0.1] (RFC 8415 §15).
func jitter(d time.Duration) time.Duration {
	return time.Duration((mrand.Float64()*0.2 - 0.1) * float64(d))
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
