package netns

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/internal/testenv"
	"github.com/lw4o6/lw4o6/stack/pcp"
	"github.com/lw4o6/lw4o6/test/internal/daemon"
)

// A real NAT-PMP client (natpmpc, RFC 6886) on a kernel LAN host maps a
// TCP port through lw4o6-b4's LAN server (host socket on the LAN
// gateway's address, --lan-pcp); a host in the Internet namespace reaches
// the LAN service through the mapping, and through a static --forward.
func TestNATPMPClientThroughB4(t *testing.T) {
	requireRoot(t)
	natpmpc := testenv.LookPath(t, "natpmpc") // Debian package natpmpc
	bin := daemon.Build(t)
	l := setup(t)

	// The LAN host listens for announcements (224.0.0.1:5350) before the
	// B4 starts: RFC 6887 §14.1.3 on start and on provisioning.
	var ann net.PacketConn
	if err := l.inNS("lan", func() (err error) {
		ann, err = net.ListenPacket("udp4", "0.0.0.0:5350")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ann.Close()

	aftrOut := l.daemon("aftr", bin+"/lw4o6-aftr", "--ipv6", aftrAddr, "--underlay", "raw", "--ipv4-side", "tun:lw4o6i",
		"--tun-addr", aftrInet+"/32", "--pool", pool, "--ports-per-b4", fmt.Sprint(portsPer), "--log-level", "debug",
		"--state-dir", filepath.Join(l.dir, "aftr-state"))
	daemon.WaitLine(t, aftrOut, "AFTR ")
	b4Out := l.daemon("b4", bin+"/lw4o6-b4", "--aftr", aftrAddr, "--underlay", "raw", "--tun", "lw4o6l",
		"--tun-addr", lanTunNet, "--tun-setup", "--default-route", "--log-level", "debug",
		"--nonce-file", filepath.Join(l.dir, "b4.nonce"),
		"--lan-pcp", lanGW, "--forward", "tcp:80="+lanHost+":7001")
	line := daemon.WaitLine(t, b4Out, "provisioned:")
	f := strings.Fields(line)
	pub := netip.MustParseAddr(f[3])
	var first, last uint16
	fmt.Sscanf(f[5], "%d-%d", &first, &last)
	fwd := daemon.WaitLine(t, b4Out, "forward tcp ")
	t.Logf("B4: %s\nB4: %s", line, fwd)
	// "forward tcp 192.0.2.0:4100 -> 198.18.0.2:7001 (port 80 is outside ...)"
	fwdPub, err := netip.ParseAddrPort(strings.Fields(fwd)[2])
	if err != nil || fwdPub.Addr() != pub || fwdPub.Port() < first || fwdPub.Port() > last {
		t.Fatalf("forward line %q: want %v and a port in %d-%d", fwd, pub, first, last)
	}

	// The ANNOUNCE came out of the LAN interface, from the gateway's 5351.
	sawAnnounce := false
	buf := make([]byte, 1500)
	for deadline := time.Now().Add(15 * time.Second); !sawAnnounce && time.Now().Before(deadline); {
		ann.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := ann.ReadFrom(buf)
		if err != nil {
			continue
		}
		m, err := pcp.Parse(buf[:n])
		sawAnnounce = err == nil && m.Opcode == pcp.OpAnnounce && m.Response && from.String() == lanGW+":5351"
	}
	if !sawAnnounce {
		t.Fatal("no ANNOUNCE from the gateway on the LAN")
	}

	// LAN services: 7000 and 7002 (natpmpc's mappings), 7001 (the forward).
	for _, port := range []int{7000, 7001, 7002} {
		var ln net.Listener
		if err := l.inNS("lan", func() (err error) {
			ln, err = net.Listen("tcp4", net.JoinHostPort(lanHost, strconv.Itoa(port)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				var b [8]byte
				binary.BigEndian.PutUint64(b[:], uint64(port))
				c.Write(b[:])
				c.Close()
			}
		}()
	}

	// natpmpc: the external address, then a TCP mapping of 7000.
	out := l.natpmpc(natpmpc, "-g", lanGW)
	if !strings.Contains(out, "Public IP address : "+pub.String()) {
		t.Fatalf("natpmpc public address: want %v in\n%s", pub, out)
	}
	out = l.natpmpc(natpmpc, "-g", lanGW, "-a", "7000", "7000", "tcp", "600")
	m := regexp.MustCompile(`Mapped public port (\d+) protocol TCP to local port 7000 l\w*time (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("natpmpc -a: no mapping in\n%s", out)
	}
	ext, _ := strconv.Atoi(m[1])
	if ext < int(first) || ext > int(last) || ext == 5350 || ext == 5351 {
		t.Fatalf("natpmpc got port %d, outside %d-%d", ext, first, last)
	}
	t.Logf("natpmpc: %s", m[0])

	// The Internet host reaches both services.
	for _, c := range []struct {
		to   netip.AddrPort
		want uint64
	}{{netip.AddrPortFrom(pub, uint16(ext)), 7000}, {fwdPub, 7001}} {
		var got uint64
		if err := l.inNS("inet", func() error {
			conn, err := net.DialTimeout("tcp4", c.to.String(), 10*time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			b, err := io.ReadAll(conn)
			if err != nil || len(b) != 8 {
				return fmt.Errorf("read %x: %v", b, err)
			}
			got = binary.BigEndian.Uint64(b)
			return nil
		}); err != nil || got != c.want {
			t.Fatalf("from the Internet to %v: got %d, %v; want the LAN service on %d", c.to, got, err, c.want)
		}
	}

	// natpmpc maps 7002 and deletes it (lifetime 0): with no traffic on it
	// the mapping is gone at once (RFC 6887 §15 lets a used one live on
	// while its sessions do), and the Internet host cannot connect.
	out = l.natpmpc(natpmpc, "-g", lanGW, "-a", "7002", "7002", "tcp", "600")
	m = regexp.MustCompile(`Mapped public port (\d+) protocol TCP to local port 7002`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("natpmpc -a 7002: no mapping in\n%s", out)
	}
	ext2, _ := strconv.Atoi(m[1])
	out = l.natpmpc(natpmpc, "-g", lanGW, "-a", m[1], "7002", "tcp", "0")
	if !regexp.MustCompile(`l\w*time 0`).MatchString(out) {
		t.Fatalf("natpmpc delete:\n%s", out)
	}
	if err := l.inNS("inet", func() error {
		conn, err := net.DialTimeout("tcp4", netip.AddrPortFrom(pub, uint16(ext2)).String(), 3*time.Second)
		if err == nil {
			conn.Close()
			return fmt.Errorf("connected to %v:%d after the delete", pub, ext2)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// natpmpc runs the client in the LAN namespace and returns its output; it
// retries a few times, as the B4 may still be settling.
func (l *lab) natpmpc(bin string, args ...string) string {
	l.t.Helper()
	var out []byte
	var err error
	for try := 0; try < 3; try++ {
		out, err = exec.Command("ip", append([]string{"netns", "exec", l.ns("lan"), bin}, args...)...).CombinedOutput()
		if err == nil {
			return string(out)
		}
		time.Sleep(time.Second)
	}
	l.t.Fatalf("natpmpc %v: %v\n%s", args, err, out)
	return ""
}
