package dhcp6

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/dhcpv6/server6"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/lw4o6/lw4o6/internal/testenv"
)

// opt encodes one DHCPv6 option.
func opt(code uint16, data ...[]byte) []byte {
	d := bytes.Join(data, nil)
	b := binary.BigEndian.AppendUint16(nil, code)
	b = binary.BigEndian.AppendUint16(b, uint16(len(d)))
	return append(b, d...)
}

func brOpt(a string) []byte {
	s := netip.MustParseAddr(a).As16()
	return opt(OptS46BR, s[:])
}

// bindOpt is OPTION_S46_V4V6BIND with an optional PORTPARAMS.
func bindOpt(v4, prefix string, pp []byte) []byte {
	a := netip.MustParseAddr(v4).As4()
	p := netip.MustParsePrefix(prefix)
	p6 := p.Addr().As16()
	d := append(a[:], byte(p.Bits()))
	d = append(d, p6[:(p.Bits()+7)/8]...)
	return opt(OptS46V4V6Bind, d, pp)
}

func portParams(a, k uint8, field uint16) []byte {
	return opt(OptS46PortPar, []byte{a, k}, binary.BigEndian.AppendUint16(nil, field))
}

// server is an in-process DHCPv6 server built from server6, on [::1].
type server struct {
	addr net.Addr
	mu   sync.Mutex
	reqs []*dhcpv6.Message
	// reply returns the options of the Reply to the n-th request (from
	// 0); drop true ignores it.
	reply func(n int) (opts [][]byte, drop bool)
}

func startServer(t *testing.T, reply func(n int) ([][]byte, bool)) *server {
	t.Helper()
	conn, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		testenv.Missing(t, "no IPv6 loopback: %v", err)
	}
	s := &server{addr: conn.LocalAddr(), reply: reply}
	srv, err := server6.NewServer("", nil, s.handle, server6.WithConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return s
}

var serverDUID = &dhcpv6.DUIDLL{HWType: 1, LinkLayerAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}

func (s *server) handle(conn net.PacketConn, peer net.Addr, d dhcpv6.DHCPv6) {
	m, ok := d.(*dhcpv6.Message)
	if !ok || m.MessageType != dhcpv6.MessageTypeInformationRequest {
		return
	}
	s.mu.Lock()
	n := len(s.reqs)
	s.reqs = append(s.reqs, m)
	s.mu.Unlock()
	opts, drop := s.reply(n)
	if drop {
		return
	}
	rep := &dhcpv6.Message{MessageType: dhcpv6.MessageTypeReply, TransactionID: m.TransactionID}
	if cid := m.Options.ClientID(); cid != nil {
		rep.AddOption(dhcpv6.OptClientID(cid))
	}
	rep.AddOption(dhcpv6.OptServerID(serverDUID))
	b := rep.ToBytes()
	for _, o := range opts {
		b = append(b, o...)
	}
	conn.WriteTo(b, peer)
}

func (s *server) requests() []*dhcpv6.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*dhcpv6.Message(nil), s.reqs...)
}

// client returns a Client on [::1] talking to s, with short timers.
func (s *server) client(t *testing.T, log *slog.Logger) *Client {
	t.Helper()
	conn, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &Client{
		Conn: conn, Server: s.addr,
		ClientID: &dhcpv6.DUIDLL{HWType: 1, LinkLayerAddr: net.HardwareAddr{2, 0, 0, 0, 0, 2}},
		IRT:      100 * time.Millisecond, MRT: 400 * time.Millisecond, MaxDelay: 10 * time.Millisecond,
		Logger: log,
	}
}

// dnsServer answers AAAA queries from a table it can change, on [::1].
type dnsServer struct {
	addr    netip.AddrPort
	mu      sync.Mutex
	answers map[string]netip.Addr // lower-case name with the dot
	ttl     uint32
	queries int
}

func startDNS(t *testing.T, answers map[string]netip.Addr, ttl uint32) *dnsServer {
	t.Helper()
	conn, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		testenv.Missing(t, "no IPv6 loopback: %v", err)
	}
	d := &dnsServer{addr: conn.LocalAddr().(*net.UDPAddr).AddrPort(), answers: answers, ttl: ttl}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, peer, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if out := d.answer(buf[:n]); out != nil {
				conn.WriteTo(out, peer)
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return d
}

func (d *dnsServer) set(name string, a netip.Addr) {
	d.mu.Lock()
	d.answers[name] = a
	d.mu.Unlock()
}

func (d *dnsServer) answer(b []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(b)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	d.mu.Lock()
	d.queries++
	a, ok := d.answers[strings.ToLower(q.Name.String())]
	ttl := d.ttl
	d.mu.Unlock()
	rh := dnsmessage.Header{ID: h.ID, Response: true, RecursionAvailable: true}
	if !ok {
		rh.RCode = dnsmessage.RCodeNameError
	}
	bl := dnsmessage.NewBuilder(nil, rh)
	bl.StartQuestions()
	bl.Question(q)
	bl.StartAnswers()
	if ok && q.Type == dnsmessage.TypeAAAA {
		bl.AAAAResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: ttl}, dnsmessage.AAAAResource{AAAA: a.As16()})
	}
	out, _ := bl.Finish()
	return out
}

// logBuffer is a slog.Logger writing to a buffer tests read.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLog() (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
