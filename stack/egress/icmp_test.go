package egress

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lw4o6/lw4o6/internal/testenv"
	"github.com/lw4o6/lw4o6/stack/netstack"
)

// pingAllowed skips the test unless this process may open ping sockets
// (net.ipv4.ping_group_range).
func pingAllowed(t *testing.T) {
	t.Helper()
	if err := canPing(); err != nil {
		testenv.Missing(t, "no ping sockets here (net.ipv4.ping_group_range; .ci/run widens it): %v", err)
	}
}

func canPing() error {
	c, err := (&NetDialer{}).ListenPacket(context.Background(), NetworkPing4, "")
	if err == nil {
		c.Close()
	}
	return err
}

// TestPing pings 198.51.100.10 from the B4-side host; the egress pings
// 127.0.0.1 from the host and answers with the original addresses. The
// 3000-byte echo is reassembled by the egress's stack and its reply
// fragmented by the egress.
func TestPing(t *testing.T) {
	pingAllowed(t)
	checkGoroutines(t)
	h := newHarness(t, Config{Ping: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for seq, size := range []int{56, 3000, 56} {
		if _, err := h.host.Ping(ctx, farAddr, uint16(seq), pattern(size, byte(seq))); err != nil {
			t.Fatalf("ping %d (%d bytes): %v", seq, size, err)
		}
	}
	// netstack's Ping opens an endpoint, so an identifier, per call: a
	// flow each. Now two requests of one identifier, built by hand: one
	// more flow, and replies with the B4's identifier and the original
	// addresses.
	replies := make(chan []byte, 16)
	tap := func(p []byte) {
		if header.IPv4(p).Protocol() == uint8(header.ICMPv4ProtocolNumber) {
			replies <- p
		}
	}
	h.tap.Store(&tap)
	before := h.e.Stats().Ping.Opened
	for seq := uint16(7); seq < 9; seq++ {
		h.e.Inject(echoRequestPacket(0x4242, seq, []byte("hello")))
		select {
		case p := <-replies:
			ip := header.IPv4(p)
			m := header.ICMPv4(ip.Payload())
			if ip.SourceAddress().As4() != farAddr.As4() || ip.DestinationAddress().As4() != b4Addr.As4() ||
				m.Type() != header.ICMPv4EchoReply || m.Ident() != 0x4242 || m.Sequence() != seq ||
				string(m.Payload()) != "hello" || checksum.Checksum(m, 0) != 0xffff {
				t.Errorf("reply %v -> %v type %d id %#x seq %d", ip.SourceAddress(), ip.DestinationAddress(), m.Type(), m.Ident(), m.Sequence())
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no reply to seq %d", seq)
		}
	}
	// The counters are bumped on the egress goroutines, which may still be
	// finishing the last reply when it arrives here: wait for all of them.
	eventually(t, "ping counters", func() bool {
		st := h.e.Stats()
		return st.Ping.BytesOut == 56+3000+56+5+5 && st.Ping.BytesIn == 56+3000+56+5+5 &&
			st.Echo.Requests == 5 && st.Echo.Replies == 5
	})
	st := h.e.Stats()
	if st.Echo.Requests != 5 || st.Echo.Replies != 5 || st.Echo.Dropped != 0 {
		t.Errorf("echo stats %+v", st.Echo)
	}
	if st.Ping.Opened != before+1 || st.Ping.Failed != 0 || st.Ping.BytesIn != 56+3000+56+5+5 {
		t.Errorf("ping flow stats %+v (%d before)", st.Ping, before)
	}
}

// echoRequestPacket is an ICMP echo request from the B4-side host to farAddr.
func echoRequestPacket(id, seq uint16, data []byte) []byte {
	msg := make([]byte, header.ICMPv4MinimumSize+len(data))
	m := header.ICMPv4(msg)
	m.SetType(header.ICMPv4Echo)
	m.SetIdent(id)
	m.SetSequence(seq)
	copy(msg[header.ICMPv4MinimumSize:], data)
	m.SetChecksum(^checksum.Checksum(msg, 0))
	return ipv4Datagrams(b4Addr.As4(), farAddr.As4(), 0, 1, header.ICMPv4ProtocolNumber, msg, 1500)[0]
}

// TestPingOff: with Config.Ping false nothing answers, and the request is
// counted.
func TestPingOff(t *testing.T) {
	checkGoroutines(t)
	h := newHarness(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := h.host.Ping(ctx, farAddr, 1, []byte("x")); !errors.Is(err, netstack.ErrPingTimeout) {
		t.Fatalf("ping: %v, want a timeout", err)
	}
	// Counted on the egress goroutine: wait for it.
	eventually(t, "the dropped echo request", func() bool {
		st := h.e.Stats()
		return st.Echo.Requests == 1 && st.Echo.Dropped == 1
	})
	if st := h.e.Stats(); st.Ping.Opened != 0 {
		t.Errorf("stats %+v", st)
	}
}

// noPing is a host where ping sockets are not permitted.
type noPing struct{ redirect }

func (*noPing) ListenPacket(context.Context, string, string) (net.PacketConn, error) {
	return nil, &net.OpError{Op: "socket", Net: NetworkPing4, Err: syscall.EACCES}
}

// TestPingNotPermitted: the host refuses the ping socket; requests are
// dropped and counted, and the host is not asked again for every request.
func TestPingNotPermitted(t *testing.T) {
	checkGoroutines(t)
	h := newHarness(t, Config{Ping: true, Dialer: &noPing{redirect{from: farAddr, to: lo}}})
	for seq := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := h.host.Ping(ctx, farAddr, uint16(seq), []byte("x"))
		cancel()
		if !errors.Is(err, netstack.ErrPingTimeout) {
			t.Fatalf("ping: %v, want a timeout", err)
		}
	}
	// The counters are bumped on the egress goroutine, which may still be
	// handling the last request when the ping times out: wait for them.
	eventually(t, "three dropped echo requests", func() bool {
		st := h.e.Stats()
		return st.Echo.Requests == 3 && st.Echo.Dropped == 3
	})
	st := h.e.Stats()
	if st.Echo.Replies != 0 {
		t.Errorf("echo stats %+v", st.Echo)
	}
	if st.Ping.Failed != 1 || st.Ping.Opened != 0 {
		t.Errorf("ping flow stats %+v", st.Ping)
	}
}

func TestEchoReply(t *testing.T) {
	k := pingKey{src: [4]byte{192, 0, 2, 5}, dst: [4]byte{198, 51, 100, 10}, id: 0x1234}
	for _, tc := range []struct{ size, mtu, frags int }{
		{56, 1460, 1},
		{1460 - 28, 1460, 1},
		{1460 - 27, 1460, 2},
		{3000, 1460, 3},
		{65507, 1460, 46},
	} {
		data := pattern(tc.size, 7)
		pkts := echoReply(k, 0x10, 99, 5, data, tc.mtu)
		if len(pkts) != tc.frags {
			t.Errorf("%d bytes at MTU %d: %d packets, want %d", tc.size, tc.mtu, len(pkts), tc.frags)
			continue
		}
		var msg []byte
		for i, p := range pkts {
			ip := header.IPv4(p)
			if len(p) > tc.mtu || !ip.IsValid(len(p)) || !ip.IsChecksumValid() {
				t.Fatalf("fragment %d: invalid header (len %d)", i, len(p))
			}
			if ip.SourceAddress().As4() != k.dst || ip.DestinationAddress().As4() != k.src ||
				ip.ID() != 99 || ip.Protocol() != uint8(header.ICMPv4ProtocolNumber) {
				t.Fatalf("fragment %d: header %v -> %v id %d", i, ip.SourceAddress(), ip.DestinationAddress(), ip.ID())
			}
			if tos, _ := ip.TOS(); tos != 0x10 {
				t.Errorf("TOS %#x", tos)
			}
			if int(ip.FragmentOffset()) != len(msg) || ip.More() != (i < len(pkts)-1) {
				t.Fatalf("fragment %d: offset %d more %v, want %d", i, ip.FragmentOffset(), ip.More(), len(msg))
			}
			msg = append(msg, ip.Payload()...)
		}
		m := header.ICMPv4(msg)
		if checksum.Checksum(msg, 0) != 0xffff || m.Type() != header.ICMPv4EchoReply || m.Ident() != 0x1234 || m.Sequence() != 5 ||
			string(m.Payload()) != string(data) {
			t.Errorf("%d bytes: bad echo reply", tc.size)
		}
	}
}

// TestEchoBadChecksum: gVisor hands echo requests with a bad checksum to
// the handler too; they are counted and not relayed.
func TestEchoBadChecksum(t *testing.T) {
	checkGoroutines(t)
	h := newHarness(t, Config{Ping: true})
	p := echoRequestPacket(1, 1, []byte("x"))
	p[header.IPv4MinimumSize+8] ^= 0xff
	h.e.Inject(p)
	eventually(t, "invalid echo count", func() bool { return h.e.Stats().Echo.Invalid == 1 })
	if st := h.e.Stats(); st.Echo.Requests != 1 || st.Ping.Opened+st.Ping.Failed != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestListenPing4Address(t *testing.T) {
	if _, err := listenPing4("::1"); err == nil {
		t.Error("IPv6 address accepted")
	}
}
