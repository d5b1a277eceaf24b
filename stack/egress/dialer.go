package egress

import (
	"context"
	"net"
	"time"
)

// NetworkPing4 is the network Egress passes to HostDialer.ListenPacket for
// an unprivileged ICMP echo socket (Linux SOCK_DGRAM/IPPROTO_ICMP, what
// golang.org/x/net/icmp calls "udp4"). Its PacketConn reads and writes whole
// ICMP messages without the IP header; addresses are *net.UDPAddr with port
// 0. The kernel replaces the echo identifier with the socket's own and
// computes the checksum.
const NetworkPing4 = "ping4"

// HostDialer opens the host sockets the egress re-originates flows on. The
// egress calls DialContext with network "tcp4" or "udp4" and the flow's
// original destination as "a.b.c.d:port", and ListenPacket with NetworkPing4
// and an empty address. Tests redirect destinations with it; an embedder can
// bind to an interface or go through a proxy.
type HostDialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
	ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error)
}

// Keepalive settings for both halves of a TCP relay, so that a B4 or server
// that vanished without a FIN or RST frees its relay after about three
// minutes.
const (
	keepaliveIdle     = 60 * time.Second
	keepaliveInterval = 30 * time.Second
	keepaliveCount    = 4
)

// NetDialer is the default HostDialer: the net package, plus ping sockets.
type NetDialer struct {
	// Dialer is used for DialContext; its zero value gets the egress's
	// keepalive settings.
	Dialer net.Dialer
	// ListenConfig is used by ListenPacket for networks other than
	// NetworkPing4.
	ListenConfig net.ListenConfig
}

// DialContext implements HostDialer.
func (d *NetDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	nd := d.Dialer
	if nd.KeepAlive == 0 && !nd.KeepAliveConfig.Enable {
		nd.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: keepaliveIdle, Interval: keepaliveInterval, Count: keepaliveCount}
	}
	return nd.DialContext(ctx, network, address)
}

// ListenPacket implements HostDialer.
func (d *NetDialer) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	if network == NetworkPing4 {
		return listenPing4(address)
	}
	return d.ListenConfig.ListenPacket(ctx, network, address)
}
