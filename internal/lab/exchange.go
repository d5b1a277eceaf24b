package lab

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"time"
)

// Result is what one LAN host's exchanges with the Internet host achieved.
type Result struct {
	TCPBytes int
	TCPTime  time.Duration
	UDPBytes int
	RTT      time.Duration // ping
	TCPLocal netip.AddrPort
	Err      error
}

// Exchange runs, from node i's LAN host, a TCP transfer of tcpBytes from the
// Internet host, a UDP echo and a ping.
func (w *World) Exchange(ctx context.Context, i, tcpBytes int) Result {
	var r Result
	if r.Err = w.TCP(ctx, i, tcpBytes, &r); r.Err != nil {
		return r
	}
	if r.Err = w.UDP(ctx, i, &r); r.Err != nil {
		return r
	}
	r.RTT, r.Err = w.Ping(ctx, i)
	return r
}

// Ping pings the Internet host from node i's LAN host as ping(8) does: a
// request a second, up to five, until one is answered. (A single request
// lost in a busy lab of hundreds of B4s once failed whole runs.)
func (w *World) Ping(ctx context.Context, i int) (time.Duration, error) {
	var err error
	for seq := uint16(1); seq <= 5; seq++ {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		var rtt time.Duration
		rtt, err = w.Nodes[i].Host.Ping(pctx, ServerAddr, seq, []byte("lw4o6 lab ping"))
		cancel()
		if err == nil {
			return rtt, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return 0, fmt.Errorf("ping from %v: %w", LANHostAddr(i), err)
}

// TCP downloads n octets from the Internet host.
func (w *World) TCP(ctx context.Context, i, n int, r *Result) error {
	h := w.Nodes[i].Host
	start := time.Now()
	c, err := h.DialTCP(ctx, netip.AddrPortFrom(ServerAddr, TCPPort))
	if err != nil {
		return fmt.Errorf("tcp dial from %v: %w", LANHostAddr(i), err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(n))
	if _, err := c.Write(hdr[:]); err != nil {
		return fmt.Errorf("tcp write from %v: %w", LANHostAddr(i), err)
	}
	got, err := io.Copy(io.Discard, c)
	if err != nil {
		return fmt.Errorf("tcp read from %v after %d octets: %w", LANHostAddr(i), got, err)
	}
	if int(got) != n {
		return fmt.Errorf("%w: %d of %d octets", errShort, got, n)
	}
	r.TCPBytes, r.TCPTime = int(got), time.Since(start)
	r.TCPLocal, _ = netip.ParseAddrPort(c.LocalAddr().String())
	return nil
}

// UDP sends a datagram to the echo service and waits for it to come back,
// retrying a few times as a UDP application would.
func (w *World) UDP(ctx context.Context, i int, r *Result) error {
	h := w.Nodes[i].Host
	c, err := h.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(ServerAddr, UDPPort))
	if err != nil {
		return fmt.Errorf("udp socket on %v: %w", LANHostAddr(i), err)
	}
	defer c.Close()
	msg := []byte(fmt.Sprintf("lw4o6 lab udp echo from host %d", i))
	buf := make([]byte, 2048)
	for try := 0; try < 5; try++ {
		if _, err := c.Write(msg); err != nil {
			return fmt.Errorf("udp write from %v: %w", LANHostAddr(i), err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err == nil && bytes.Equal(buf[:n], msg) {
			r.UDPBytes += 2 * n
			return nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("udp echo from %v: no answer", LANHostAddr(i))
}
