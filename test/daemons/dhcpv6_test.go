package daemons

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/dhcpv6/server6"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/lw4o6/lw4o6/b4/dhcp6"
	"github.com/lw4o6/lw4o6/internal/testenv"
	"github.com/lw4o6/lw4o6/test/internal/daemon"
)

func dopt(code uint16, data ...[]byte) []byte {
	var d []byte
	for _, x := range data {
		d = append(d, x...)
	}
	b := binary.BigEndian.AppendUint16(nil, code)
	b = binary.BigEndian.AppendUint16(b, uint16(len(d)))
	return append(b, d...)
}

func a16(s string) []byte { a := netip.MustParseAddr(s).As16(); return a[:] }

// dhcpServer answers Information-Requests on [::1] with opts (a server
// built from the same library as the client).
func dhcpServer(t *testing.T, opts ...[]byte) string {
	conn, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		testenv.Missing(t, "no IPv6 loopback: %v", err)
	}
	srv, err := server6.NewServer("", nil, func(c net.PacketConn, peer net.Addr, d dhcpv6.DHCPv6) {
		m, ok := d.(*dhcpv6.Message)
		if !ok || m.MessageType != dhcpv6.MessageTypeInformationRequest {
			return
		}
		rep, err := dhcpv6.NewReplyFromMessage(m, dhcpv6.WithServerID(&dhcpv6.DUIDLL{HWType: 1, LinkLayerAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}))
		if err != nil {
			return
		}
		b := rep.ToBytes()
		for _, o := range opts {
			b = append(b, o...)
		}
		c.WriteTo(b, peer)
	}, server6.WithConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return conn.LocalAddr().String()
}

// dnsServer answers AAAA queries for name with addr, on [::1].
func dnsServer(t *testing.T, name string, addr netip.Addr) int {
	conn, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		testenv.Missing(t, "no IPv6 loopback: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, peer, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			bl := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true})
			bl.StartQuestions()
			bl.Question(q)
			bl.StartAnswers()
			if strings.EqualFold(q.Name.String(), name) && q.Type == dnsmessage.TypeAAAA {
				bl.AAAAResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 300}, dnsmessage.AAAAResource{AAAA: addr.As16()})
			}
			out, _ := bl.Finish()
			conn.WriteTo(out, peer)
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return conn.LocalAddr().(*net.UDPAddr).Port
}

// A B4 without --aftr asks DHCPv6 for the AFTR-Name, resolves it with the
// DNS server the Reply names, and provisions by PCP from that AFTR; a B4
// on --provision dhcpv6 (and one on auto whose PCP goes unanswered) runs on
// the RFC 7598 S46 binding that the AFTR holds statically.
func TestDaemonsDHCPv6(t *testing.T) {
	dir := daemon.Build(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go daemon.ServeDownload(ln, nil)
	download := func(t *testing.T, socks int) {
		c, err := socksConnect(fmt.Sprintf("127.0.0.1:%d", socks), ln.Addr().(*net.TCPAddr).AddrPort())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if err := daemon.Download(c, 1<<20); err != nil {
			t.Fatalf("TCP through the daemons: %v", err)
		}
	}

	// The AFTR: a PCP pool, and the static binding that the S46 option
	// describes (192.0.2.9, PSID 5 of 6 bits: ports 5120-6143).
	// Readable by nobody, whom the daemons run as under root.
	confDir := t.TempDir()
	os.Chmod(filepath.Dir(confDir), 0o755)
	os.Chmod(confDir, 0o755)
	conf := filepath.Join(confDir, "lwaftr.conf")
	os.WriteFile(conf, []byte(`softwire-config {
  binding-table {
    softwire { ipv4 192.0.2.9; psid 5; b4-ipv6 2001:db8:b4::9; br-address 2001:db8::1; port-set { psid-length 6; } }
  }
}
`), 0o644)
	under := freePort(t, "udp")
	aftrOut := start(t, dir+"/lw4o6-aftr", "--ipv6", "2001:db8::1", "--underlay", "udp",
		"--underlay-listen", fmt.Sprintf("127.0.0.1:%d", under), "--ipv4-side", "host", "--egress-allow-loopback",
		"--pool", "192.0.2.0/30", "--ports-per-b4", "4096", "--bindings", conf, "--state-dir", stateDir(t))
	daemon.WaitLine(t, aftrOut, "AFTR ")
	b4 := func(t *testing.T, args ...string) (string, int) {
		socks := freePort(t, "tcp")
		out := start(t, dir+"/lw4o6-b4", append([]string{"--underlay", "udp",
			"--underlay-peer", fmt.Sprintf("127.0.0.1:%d", under), "--socks5", fmt.Sprintf("127.0.0.1:%d", socks),
			"--nonce-file", "none", "--allow-loopback"}, args...)...) // the "Internet" server is on loopback
		return daemon.WaitLine(t, out, "provisioned:"), socks
	}
	lw := dopt(dhcp6.OptS46ContLW, dopt(dhcp6.OptS46BR, a16("2001:db8::1")),
		dopt(dhcp6.OptS46V4V6Bind, []byte{192, 0, 2, 9, 128}, a16("2001:db8:b4::9"),
			dopt(dhcp6.OptS46PortPar, []byte{0, 6, 5 << 2, 0})))

	t.Run("aftr-name", func(t *testing.T) {
		dnsPort := dnsServer(t, "aftr.example.net.", netip.MustParseAddr("2001:db8::1"))
		srv := dhcpServer(t, dopt(dhcp6.OptAFTRName, dhcp6.AppendName(nil, "aftr.example.net")), dopt(dhcp6.OptDNSServers, a16("::1")))
		line, socks := b4(t, "--ipv6", "2001:db8:b4::1", "--provision", "pcp", "--dhcpv6-server", srv,
			"--dhcpv6-dns-port", fmt.Sprint(dnsPort))
		if !strings.Contains(line, "public IPv4 192.0.2.") || !strings.Contains(line, "lifetime") {
			t.Fatalf("B4 says %q", line)
		}
		download(t, socks)
	})
	t.Run("s46", func(t *testing.T) {
		srv := dhcpServer(t, lw)
		line, socks := b4(t, "--provision", "dhcpv6", "--dhcpv6-server", srv)
		if !strings.HasPrefix(line, "provisioned: public IPv4 192.0.2.9 ports 5120-6143 from dhcpv6 ") {
			t.Fatalf("B4 says %q", line)
		}
		download(t, socks)
	})
	t.Run("auto-fallback", func(t *testing.T) {
		srv := dhcpServer(t, lw)
		// An AFTR address nobody answers PCP from: the S46 binding wins.
		line, socks := b4(t, "--aftr", "2001:db8::99", "--ipv6", "2001:db8:b4::9", "--provision", "auto",
			"--pcp-wait", "2s", "--dhcpv6-server", srv)
		if !strings.HasPrefix(line, "provisioned: public IPv4 192.0.2.9 ports 5120-6143 from dhcpv6 ") {
			t.Fatalf("B4 says %q", line)
		}
		download(t, socks)
	})
}
