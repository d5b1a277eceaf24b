package netns

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/lw4o6/lw4o6/internal/testenv"
	"github.com/lw4o6/lw4o6/test/internal/daemon"
)

// The S46 binding Kea hands out, and the AFTR holds statically.
const (
	s46IPv4  = "192.0.2.9"
	s46PSID  = 5 // of 6 bits: ports 5120-6143
	s46Ports = "5120-6143"
	// s46BR is the S46 BR: the AFTR (whose raw underlay listens on its
	// first address only).
	s46BR = aftrAddr
	// s46B4 is the B4's tunnel address in the binding (a /128 bind
	// prefix), beside the address it uses for PCP.
	s46B4 = "2001:db8:a::9"
)

// keaConf is a kea-dhcp6 configuration answering Information-Requests on
// acc0 with AFTR-Name, a DNS server and the lw4o6 container (RFC 7598).
func keaConf(dir string) string {
	return `{"Dhcp6": {
  "interfaces-config": {"interfaces": ["acc0"]},
  "lease-database": {"type": "memfile", "persist": false},
  "server-id": {"type": "LL", "persist": false},
  "option-data": [
    {"name": "aftr-name", "data": "aftr.example.net."},
    {"name": "dns-servers", "data": "` + aftrAddr + `"},
    {"name": "s46-cont-lw"},
    {"space": "s46-cont-lw-options", "name": "s46-br", "data": "` + s46BR + `"},
    {"space": "s46-cont-lw-options", "name": "s46-v4v6bind", "data": "` + s46IPv4 + `, ` + s46B4 + `/128"},
    {"space": "s46-v4v6bind-options", "name": "s46-portparams", "data": "0, ` + fmt.Sprint(s46PSID) + `/6"}
  ],
  "loggers": [{"name": "kea-dhcp6", "output_options": [{"output": "` + filepath.Join(dir, "kea.log") + `"}], "severity": "INFO"}]
}}`
}

// TestKeaDHCPv6 provisions the B4 daemon from Debian's DHCPv6 server, Kea:
// first the AFTR-Name (resolved with the DNS server Kea names) for PCP,
// then the S46 binding with no PCP; traffic flows through the AFTR each
// time.
func TestKeaDHCPv6(t *testing.T) {
	requireRoot(t)
	kea := testenv.LookPath(t, "kea-dhcp6")
	bin := daemon.Build(t)
	l := setup(t)
	// DHCPv6 speaks from link-local addresses: wait for DAD on both ends.
	for _, ns := range []string{"b4", "aftr"} {
		deadline := time.Now().Add(20 * time.Second)
		for {
			out, _ := exec.Command("ip", "netns", "exec", l.ns(ns), "ip", "-6", "addr", "show", "dev", "acc0", "tentative").Output()
			if len(strings.TrimSpace(string(out))) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("acc0 in %s still tentative:\n%s", ns, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// The DNS server Kea names, answering aftr.example.net with the AFTR.
	var dnsConn net.PacketConn
	if err := l.inNS("aftr", func() (err error) {
		dnsConn, err = net.ListenPacket("udp6", net.JoinHostPort(aftrAddr, "53"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer dnsConn.Close()
	queries := make(chan string, 64)
	go serveAAAA(dnsConn, "aftr.example.net.", netip.MustParseAddr(aftrAddr), queries)

	conf := filepath.Join(l.dir, "kea.json")
	if err := os.WriteFile(conf, []byte(keaConf(l.dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	keaCmd := exec.Command("ip", "netns", "exec", l.ns("aftr"), kea, "-c", conf)
	keaCmd.Env = append(os.Environ(), "KEA_PIDFILE_DIR="+l.dir, "KEA_LOCKFILE_DIR="+l.dir)
	keaOut, err := os.Create(filepath.Join(l.dir, "kea.out"))
	if err != nil {
		t.Fatal(err)
	}
	keaCmd.Stdout, keaCmd.Stderr = keaOut, keaOut
	if err := keaCmd.Start(); err != nil {
		t.Fatal(err)
	}
	keaDone := make(chan error, 1)
	go func() { keaDone <- keaCmd.Wait() }()
	defer func() {
		keaCmd.Process.Signal(os.Interrupt)
		select {
		case <-keaDone:
		case <-time.After(10 * time.Second):
			keaCmd.Process.Kill()
			<-keaDone
			t.Error("kea-dhcp6 did not stop on SIGINT")
		}
		if t.Failed() {
			for _, f := range []string{"kea.out", "kea.log"} {
				b, _ := os.ReadFile(filepath.Join(l.dir, f))
				t.Logf("%s:\n%s", f, b)
			}
		}
	}()

	// The AFTR: a PCP pool, and the static binding that Kea's S46 option
	// describes.
	bindings := filepath.Join(l.dir, "lwaftr.conf")
	os.WriteFile(bindings, []byte(fmt.Sprintf(`softwire-config {
  binding-table {
    softwire { ipv4 %s; psid %d; b4-ipv6 %s; br-address %s; port-set { psid-length 6; } }
  }
}
`, s46IPv4, s46PSID, s46B4, s46BR)), 0o644)
	l.in("b4", "ip", "addr", "add", s46B4+"/64", "dev", "acc0", "nodad")
	aftrOut := l.daemon("aftr", bin+"/lw4o6-aftr", "--ipv6", aftrAddr, "--underlay", "raw", "--ipv4-side", "tun:lw4o6i",
		"--tun-addr", aftrInet+"/32", "--pool", pool, "--ports-per-b4", fmt.Sprint(portsPer), "--bindings", bindings, "--state-dir", filepath.Join(l.dir, "aftr-state"))
	daemon.WaitLine(t, aftrOut, "AFTR ")
	l.in("aftr", "ip", "route", "replace", s46IPv4+"/32", "dev", "lw4o6i")
	l.in("inet", "ip", "route", "add", s46IPv4+"/32", "via", aftrInet)

	var tcpLn net.Listener
	if err := l.inNS("inet", func() (err error) {
		tcpLn, err = net.Listen("tcp4", net.JoinHostPort(inetHost, fmt.Sprint(tcpPort)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tcpLn.Close()
	seen := make(chan net.Addr, 16)
	go daemon.ServeDownload(tcpLn, seen)

	run := func(t *testing.T, args ...string) string {
		sub := *l
		sub.t = t
		out := sub.daemon("b4", bin+"/lw4o6-b4", append([]string{"--underlay", "raw", "--access-if", "acc0",
			"--tun", "lw4o6l", "--tun-addr", lanTunNet, "--tun-setup", "--default-route", "--log-level", "debug",
			"--nonce-file", "none"}, args...)...)
		line := daemon.WaitLine(t, out, "provisioned:")
		if err := l.inNS("lan", func() error {
			c, err := net.DialTimeout("tcp4", net.JoinHostPort(inetHost, fmt.Sprint(tcpPort)), 10*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			return daemon.Download(c, 1<<20)
		}); err != nil {
			t.Fatalf("TCP through the daemons: %v", err)
		}
		select {
		case a := <-seen:
			t.Logf("B4: %s; the server saw %v", line, a)
			if f := strings.Fields(line); len(f) < 4 || a.(*net.TCPAddr).AddrPort().Addr().String() != f[3] {
				t.Errorf("server saw %v, not the B4's public address (%q)", a, line)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("server saw no connection")
		}
		return line
	}
	t.Run("aftr-name", func(t *testing.T) {
		line := run(t, "--provision", "pcp", "--ipv6", b4Access)
		if !strings.Contains(line, "lifetime") || !strings.HasPrefix(line, "provisioned: public IPv4 192.0.2.") || strings.Contains(line, s46IPv4+" ") {
			t.Fatalf("not provisioned by PCP: %q", line)
		}
		// The AFTR came from the AFTR-Name, asked of the DNS server Kea named.
		select {
		case q := <-queries:
			if !strings.EqualFold(q, "aftr.example.net. AAAA") {
				t.Errorf("DNS query %q", q)
			}
		default:
			t.Error("the B4 never asked the DNS server Kea named for the AFTR-Name")
		}
	})
	t.Run("s46", func(t *testing.T) {
		line := run(t, "--provision", "dhcpv6")
		if want := "provisioned: public IPv4 " + s46IPv4 + " ports " + s46Ports + " from dhcpv6 "; !strings.HasPrefix(line, want) {
			t.Fatalf("B4 says %q, want %q", line, want)
		}
	})
}

// serveAAAA answers AAAA queries for name with addr, and reports each
// query on queries.
func serveAAAA(c net.PacketConn, name string, addr netip.Addr, queries chan<- string) {
	buf := make([]byte, 1500)
	for {
		n, peer, err := c.ReadFrom(buf)
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
		select {
		case queries <- q.Name.String() + " " + strings.TrimPrefix(q.Type.String(), "Type"):
		default:
		}
		bl := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true})
		bl.StartQuestions()
		bl.Question(q)
		bl.StartAnswers()
		if strings.EqualFold(q.Name.String(), name) && q.Type == dnsmessage.TypeAAAA {
			bl.AAAAResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 300}, dnsmessage.AAAAResource{AAAA: addr.As16()})
		}
		out, _ := bl.Finish()
		c.WriteTo(out, peer)
	}
}
