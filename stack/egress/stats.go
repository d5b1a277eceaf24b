package egress

import "sync/atomic"

// Stats are the egress's counters since New.
type Stats struct {
	TCP FlowStats
	UDP FlowStats
	// Ping counts ping flows: one host ICMP socket per (B4 address,
	// destination, echo identifier).
	Ping FlowStats
	Echo EchoStats
	// TCPSYNDropped counts SYNs ignored because TCPMaxInFlight host dials
	// were already pending.
	TCPSYNDropped uint64
}

// FlowStats count the flows of one protocol.
type FlowStats struct {
	// Opened counts flows relayed to a host socket.
	Opened uint64
	// Active is the number of flows open now.
	Active uint64
	// Failed counts flows not relayed: a destination that is not global
	// unicast, a TCP dial error (the B4 got an RST), a UDP or ICMP socket
	// the host would not open.
	Failed uint64
	// Expired counts UDP and ping flows closed by the idle timer.
	Expired uint64
	// BytesOut is payload relayed from the B4s to the host, BytesIn from
	// the host to the B4s (TCP stream bytes, UDP and ICMP echo data).
	BytesOut, BytesIn uint64
}

// EchoStats count ICMP echo requests from the B4s.
type EchoStats struct {
	// Requests received, Replies sent back toward the B4s.
	Requests, Replies uint64
	// Dropped counts requests not relayed: Config.Ping off, a destination
	// that is not global unicast, the host refused the ping socket, or a
	// flow's send queue was full.
	Dropped uint64
	// Invalid counts requests with a bad ICMP checksum.
	Invalid uint64
}

type flowCounters struct {
	opened, active, failed, expired, bytesOut, bytesIn atomic.Uint64
}

func (c *flowCounters) open() {
	c.opened.Add(1)
	c.active.Add(1)
}

func (c *flowCounters) closed() { c.active.Add(^uint64(0)) }

func (c *flowCounters) snapshot() FlowStats {
	return FlowStats{
		Opened:   c.opened.Load(),
		Active:   c.active.Load(),
		Failed:   c.failed.Load(),
		Expired:  c.expired.Load(),
		BytesOut: c.bytesOut.Load(),
		BytesIn:  c.bytesIn.Load(),
	}
}

type echoCounters struct {
	requests, replies, dropped, invalid atomic.Uint64
}

func (c *echoCounters) snapshot() EchoStats {
	return EchoStats{Requests: c.requests.Load(), Replies: c.replies.Load(), Dropped: c.dropped.Load(), Invalid: c.invalid.Load()}
}
