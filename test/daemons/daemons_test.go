// Package daemons runs lw4o6-aftr and lw4o6-b4 as the laptop lab does, with
// no privileges: the UDP underlay on loopback, a SOCKS5 LAN front end, and
// host-socket egress to a loopback server. When the test runs as root it
// starts the daemons as nobody, to show they need nothing more.
package daemons

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/test/internal/daemon"
)

func freePort(t *testing.T, network string) int {
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	default:
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
}

// start runs a daemon, as nobody when the test runs as root.
func start(t *testing.T, bin string, args ...string) <-chan string {
	_, lines := startProc(t, bin, args...)
	return lines
}

// startProc is start, with the process (to signal it).
func startProc(t *testing.T, bin string, args ...string) (*os.Process, <-chan string) {
	cmd := exec.Command(bin, args...)
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	lines := daemon.Start(t, cmd)
	return cmd.Process, lines
}

// stateDir is a fresh directory for the AFTR's binding journal, owned by
// the user start runs the daemons as.
func stateDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "lw4o6-aftr-state")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if os.Geteuid() == 0 {
		if err := os.Chown(d, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func TestUnprivilegedDaemons(t *testing.T) {
	dir := daemon.Build(t)
	under, socks := freePort(t, "udp"), freePort(t, "tcp")

	// The "Internet": loopback TCP and UDP servers.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go daemon.ServeDownload(ln, nil)
	uc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := uc.ReadFrom(buf)
			if err != nil {
				return
			}
			uc.WriteTo(buf[:n], from)
		}
	}()

	aftrOut := start(t, dir+"/lw4o6-aftr", "--ipv6", "2001:db8::1", "--underlay", "udp",
		"--underlay-listen", fmt.Sprintf("127.0.0.1:%d", under), "--ipv4-side", "host", "--egress-allow-loopback",
		"--pool", "192.0.2.0/30", "--ports-per-b4", "4096", "--state-dir", stateDir(t))
	daemon.WaitLine(t, aftrOut, "AFTR ")
	b4Proc, b4Out := startProc(t, dir+"/lw4o6-b4", "--aftr", "2001:db8::1", "--ipv6", "2001:db8:b4::1", "--underlay", "udp",
		"--underlay-peer", fmt.Sprintf("127.0.0.1:%d", under), "--socks5", fmt.Sprintf("127.0.0.1:%d", socks), "--nonce-file", "none",
		"--allow-loopback") // the "Internet" servers are on loopback
	line := daemon.WaitLine(t, b4Out, "provisioned:")
	if !strings.Contains(line, "public IPv4 192.0.2.") {
		t.Fatalf("B4 says %q", line)
	}
	proxy := fmt.Sprintf("127.0.0.1:%d", socks)

	// A local socket claims the B4's IPv6 source once a millisecond, as
	// the attack that once hijacked a B4's traffic did: the AFTR's
	// underlay keeps the endpoint that won the B4's PCP binding.
	stopThief := make(chan struct{})
	defer close(stopThief)
	go thief(t, fmt.Sprintf("127.0.0.1:%d", under), netip.MustParseAddr("2001:db8:b4::1"), stopThief)

	// TCP: 4 MiB through SOCKS5 CONNECT.
	c, err := socksConnect(proxy, ln.Addr().(*net.TCPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := daemon.Download(c, 4<<20); err != nil {
		t.Fatalf("TCP through the daemons: %v", err)
	}

	// UDP: an echo through SOCKS5 UDP ASSOCIATE.
	if err := socksUDPEcho(proxy, uc.LocalAddr().(*net.UDPAddr).AddrPort(), []byte("lw4o6 unprivileged udp")); err != nil {
		t.Fatalf("UDP through the daemons: %v", err)
	}

	// SIGUSR1: the B4 prints its status (issue 8 item 6): provisioning,
	// the pool's fill, its sets, the explicit mappings, the counters.
	if err := b4Proc.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	daemon.WaitLine(t, b4Out, "status: provisioned (pcp) public IPv4 192.0.2.")
	if l := daemon.WaitLine(t, b4Out, "pool: "); !strings.Contains(l, "tcp ") {
		t.Errorf("pool line %q", l)
	}
	daemon.WaitLine(t, b4Out, "set 0: 192.0.2.")
	daemon.WaitLine(t, b4Out, "mappings: 0 explicit")
	daemon.WaitLine(t, b4Out, "counter: in-ipv4-packets ")
}

// socksConnect is a minimal RFC 1928 client: no authentication, CONNECT.
func socksConnect(proxy string, dst netip.AddrPort) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := socksRequest(c, 1, dst); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func socksRequest(c net.Conn, cmd byte, dst netip.AddrPort) error {
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return err
	}
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil || m != [2]byte{5, 0} {
		return fmt.Errorf("socks5 method: %x %v", m, err)
	}
	a := dst.Addr().As4()
	req := []byte{5, cmd, 0, 1, a[0], a[1], a[2], a[3], byte(dst.Port() >> 8), byte(dst.Port())}
	if _, err := c.Write(req); err != nil {
		return err
	}
	var rep [10]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		return err
	}
	if rep[1] != 0 {
		return fmt.Errorf("socks5 reply %d", rep[1])
	}
	return nil
}

func socksUDPEcho(proxy string, dst netip.AddrPort, msg []byte) error {
	ctl, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		return err
	}
	defer ctl.Close()
	ctl.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := ctl.Write([]byte{5, 1, 0}); err != nil {
		return err
	}
	var m [2]byte
	if _, err := io.ReadFull(ctl, m[:]); err != nil {
		return err
	}
	if _, err := ctl.Write([]byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0}); err != nil {
		return err
	}
	var rep [10]byte
	if _, err := io.ReadFull(ctl, rep[:]); err != nil || rep[1] != 0 {
		return fmt.Errorf("udp associate: %x %v", rep, err)
	}
	relay := netip.AddrPortFrom(netip.AddrFrom4([4]byte(rep[4:8])), binary.BigEndian.Uint16(rep[8:10]))
	if relay.Addr().IsUnspecified() {
		relay = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), relay.Port())
	}
	u, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(relay))
	if err != nil {
		return err
	}
	defer u.Close()
	a := dst.Addr().As4()
	pkt := append([]byte{0, 0, 0, 1, a[0], a[1], a[2], a[3], byte(dst.Port() >> 8), byte(dst.Port())}, msg...)
	buf := make([]byte, 2048)
	for try := 0; try < 5; try++ {
		u.Write(pkt)
		u.SetReadDeadline(time.Now().Add(time.Second))
		n, err := u.Read(buf)
		if err == nil && n >= 10 && bytes.Equal(buf[10:n], msg) {
			return nil
		}
	}
	return fmt.Errorf("no echo through %v", relay)
}

// thief sends the underlay, from its own socket, softwire packets that
// claim to come from b4 until stop is closed.
func thief(t *testing.T, underlay string, b4 netip.Addr, stop <-chan struct{}) {
	c, err := net.Dial("udp4", underlay)
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close()
	ip4 := packet.AppendUDP4(nil, packet.IPv6HeaderLen, [4]byte{192, 0, 2, 1}, [4]byte{203, 0, 113, 10}, 40000, 53, 64, []byte("not the B4"))
	pkt := packet.Encapsulate(ip4, packet.IPv6HeaderLen, b4.As16(), netip.MustParseAddr("2001:db8::1").As16(), 64)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			c.Write(pkt)
		}
	}
}
