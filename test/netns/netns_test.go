// Package netns runs the real daemons in network namespaces that the test
// creates and removes: a LAN host, the B4 (LAN TUN, raw IPv6 underlay), the
// access link (veth, real next-header-4 packets), the AFTR (IPv4 side on a
// TUN) and an Internet host with kernel TCP/UDP servers. It needs root and
// iproute2; without them it skips.
package netns

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lw4o6/lw4o6/internal/testenv"
	"github.com/lw4o6/lw4o6/test/internal/daemon"
)

// Addresses (documentation and benchmark ranges only).
const (
	lanHost   = "198.18.0.2"
	lanGW     = "198.18.0.1"
	b4Access  = "2001:db8:a::2"
	aftrAddr  = "2001:db8:a::1"
	pool      = "192.0.2.0/30"
	aftrInet  = "203.0.113.1"
	inetHost  = "203.0.113.10"
	tcpPort   = 5001
	udpPort   = 5002
	portsPer  = 4096
	lanTunNet = "198.18.1.1/30"
)

type lab struct {
	t      *testing.T
	suffix string
	dir    string
}

func (l *lab) ns(n string) string { return "lw4o6" + n + l.suffix }

func (l *lab) sh(args ...string) {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (l *lab) in(ns string, args ...string) {
	l.t.Helper()
	l.sh(append([]string{"ip", "netns", "exec", l.ns(ns)}, args...)...)
}

func requireRoot(t *testing.T) {
	testenv.RequireRoot(t, "network namespaces, TUN, raw sockets")
	testenv.LookPath(t, "ip")
	testenv.RequireFile(t, "/dev/net/tun", "/dev/net/tun")
}

var labSeq int

// setup creates the four namespaces and their links.
func setup(t *testing.T) *lab {
	labSeq++
	l := &lab{t: t, suffix: fmt.Sprintf("%d%c", os.Getpid()%100000, 'a'+labSeq%26), dir: t.TempDir()}
	for _, n := range []string{"lan", "b4", "aftr", "inet"} {
		l.sh("ip", "netns", "add", l.ns(n))
		name := l.ns(n)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
		l.in(n, "ip", "link", "set", "lo", "up")
	}
	// Runs after the daemons' cleanups (which stop them) and before the
	// namespaces go: a daemon removes the TUN it created.
	t.Cleanup(func() {
		for _, c := range [][2]string{{"b4", "lw4o6l"}, {"aftr", "lw4o6i"}} {
			if exec.Command("ip", "netns", "exec", l.ns(c[0]), "ip", "link", "show", c[1]).Run() == nil {
				t.Errorf("TUN %s still exists in %s after the daemon stopped", c[1], c[0])
			}
		}
	})
	veth := func(a, ai, b, bi string) {
		l.sh("ip", "link", "add", ai+l.suffix, "netns", l.ns(a), "type", "veth", "peer", "name", bi+l.suffix, "netns", l.ns(b))
		l.in(a, "ip", "link", "set", ai+l.suffix, "name", ai)
		l.in(b, "ip", "link", "set", bi+l.suffix, "name", bi)
		l.in(a, "ip", "link", "set", ai, "up")
		l.in(b, "ip", "link", "set", bi, "up")
	}
	veth("lan", "eth0", "b4", "lan0")
	veth("b4", "acc0", "aftr", "acc0")
	veth("aftr", "inet0", "inet", "eth0")
	l.in("lan", "ip", "addr", "add", lanHost+"/24", "dev", "eth0")
	l.in("lan", "ip", "route", "add", "default", "via", lanGW)
	l.in("b4", "ip", "addr", "add", lanGW+"/24", "dev", "lan0")
	l.in("b4", "sysctl", "-qw", "net.ipv4.ip_forward=1")
	l.in("b4", "ip", "addr", "add", b4Access+"/64", "dev", "acc0", "nodad")
	l.in("aftr", "ip", "addr", "add", aftrAddr+"/64", "dev", "acc0", "nodad")
	l.in("aftr", "ip", "addr", "add", aftrInet+"/24", "dev", "inet0")
	l.in("aftr", "sysctl", "-qw", "net.ipv4.ip_forward=1")
	l.in("inet", "ip", "addr", "add", inetHost+"/24", "dev", "eth0")
	l.in("inet", "ip", "route", "add", pool, "via", aftrInet)
	return l
}

// daemon starts a daemon inside a namespace; its stdout lines come back.
func (l *lab) daemon(ns, bin string, args ...string) <-chan string {
	l.t.Helper()
	return daemon.Start(l.t, exec.Command("ip", append([]string{"netns", "exec", l.ns(ns), bin}, args...)...))
}

// inNS runs f on a thread inside namespace ns: sockets it opens stay there.
func (l *lab) inNS(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace switch
		fd, err := unix.Open("/run/netns/"+l.ns(ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

func TestDaemonsInNamespaces(t *testing.T) {
	requireRoot(t)
	bin := daemon.Build(t)
	l := setup(t)

	// Internet host: kernel TCP and UDP servers that report the source
	// address and port they see.
	seen := make(chan netip.AddrPort, 16)
	var tcpLn net.Listener
	var udpConn net.PacketConn
	if err := l.inNS("inet", func() (err error) {
		if tcpLn, err = net.Listen("tcp4", net.JoinHostPort(inetHost, fmt.Sprint(tcpPort))); err != nil {
			return err
		}
		udpConn, err = net.ListenPacket("udp4", net.JoinHostPort(inetHost, fmt.Sprint(udpPort)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tcpLn.Close()
	defer udpConn.Close()
	tcpSeen := make(chan net.Addr, 16)
	go daemon.ServeDownload(tcpLn, tcpSeen)
	go func() {
		for a := range tcpSeen {
			seen <- a.(*net.TCPAddr).AddrPort()
		}
	}()
	go serveUDP(udpConn, seen)

	line := l.startDaemons(bin)
	var pub netip.Addr
	var first, last uint16
	if _, err := fmt.Sscanf(line, "provisioned: public IPv4 %v ports %d-%d", &pub, &first, &last); err != nil {
		// netip.Addr does not implement Scanner: parse by hand.
		f := strings.Fields(line)
		pub = netip.MustParseAddr(f[3])
		fmt.Sscanf(f[5], "%d-%d", &first, &last)
	}
	t.Logf("B4: %s", line)

	// A capture on the access link, for the 4in6 check.
	capFile := filepath.Join(l.dir, "access.pcap")
	stopCap := l.capture("aftr", "acc0", capFile)

	// TCP transfer from the kernel LAN host.
	const size = 4 << 20
	if err := l.inNS("lan", func() error {
		c, err := net.DialTimeout("tcp4", net.JoinHostPort(inetHost, fmt.Sprint(tcpPort)), 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		return daemon.Download(c, size)
	}); err != nil {
		t.Fatalf("TCP through the daemons: %v", err)
	}
	// UDP exchange.
	if err := l.inNS("lan", func() error {
		c, err := net.Dial("udp4", net.JoinHostPort(inetHost, fmt.Sprint(udpPort)))
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 100)
		for try := 0; try < 5; try++ {
			c.Write([]byte("lw4o6 netns udp"))
			c.SetReadDeadline(time.Now().Add(time.Second))
			if n, err := c.Read(buf); err == nil && string(buf[:n]) == "lw4o6 netns udp" {
				return nil
			}
		}
		return fmt.Errorf("udp: no echo")
	}); err != nil {
		t.Fatalf("UDP through the daemons: %v", err)
	}
	// Ping.
	l.in("lan", "ping", "-c", "2", "-W", "3", inetHost)
	stopCap()

	// The server saw the B4's public address and ports inside its set.
	for i := 0; i < 2; i++ {
		select {
		case ap := <-seen:
			if ap.Addr() != pub || ap.Port() < first || ap.Port() > last {
				t.Errorf("server saw %v; want %v with a port in %d-%d", ap, pub, first, last)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("server saw no flow")
		}
	}
	l.checkCapture(capFile, pub)
}

// startDaemons runs the AFTR (raw underlay, IPv4 side on a TUN) and the B4
// (LAN TUN, raw underlay) and returns the B4's "provisioned:" line.
func (l *lab) startDaemons(bin string) string {
	aftrOut := l.daemon("aftr", bin+"/lw4o6-aftr", "--ipv6", aftrAddr, "--underlay", "raw", "--ipv4-side", "tun:lw4o6i",
		"--tun-addr", aftrInet+"/32", "--pool", pool, "--ports-per-b4", fmt.Sprint(portsPer), "--log-level", "debug",
		"--state-dir", filepath.Join(l.dir, "aftr-state"))
	daemon.WaitLine(l.t, aftrOut, "AFTR ")
	b4Out := l.daemon("b4", bin+"/lw4o6-b4", "--aftr", aftrAddr, "--underlay", "raw", "--tun", "lw4o6l",
		"--tun-addr", lanTunNet, "--tun-setup", "--default-route", "--log-level", "debug", "--nonce-file", filepath.Join(l.dir, "b4.nonce"))
	return daemon.WaitLine(l.t, b4Out, "provisioned:")
}

func serveUDP(c net.PacketConn, seen chan<- netip.AddrPort) {
	buf := make([]byte, 2048)
	first := true
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		if first {
			seen <- from.(*net.UDPAddr).AddrPort()
			first = false
		}
		c.WriteTo(buf[:n], from)
	}
}

// capture records dev in ns with tcpdump or dumpcap, whichever is present.
func (l *lab) capture(ns, dev, file string) (stop func()) {
	var args []string
	if p, err := exec.LookPath("tcpdump"); err == nil {
		args = []string{p, "-i", dev, "-U", "-w", file}
	} else if p, err := exec.LookPath("dumpcap"); err == nil {
		args = []string{p, "-q", "-i", dev, "-w", file}
	} else {
		// Outside CI the rest of the test is still worth running.
		if testenv.CI() {
			l.t.Fatal("no tcpdump or dumpcap for the access-link capture (.ci/run installs tcpdump)")
		}
		l.t.Log("no tcpdump or dumpcap: skipping the access-link capture")
		return func() {}
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns(ns)}, args...)...)
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	time.Sleep(time.Second) // let it open the device
	return func() {
		time.Sleep(500 * time.Millisecond)
		cmd.Process.Signal(unix.SIGINT)
		cmd.Wait()
	}
}

// checkCapture asserts the access link carried IPv4-in-IPv6 from the B4's
// public address.
func (l *lab) checkCapture(file string, pub netip.Addr) {
	if _, err := os.Stat(file); err != nil {
		if testenv.CI() {
			l.t.Fatalf("no access-link capture: %v", err)
		}
		return // capture skipped above
	}
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		if testenv.CI() {
			l.t.Fatal("no tshark to decode the capture (.ci/run installs it)")
		}
		l.t.Log("no tshark: capture not decoded")
		return
	}
	out, err := exec.Command(tshark, "-r", file, "-Y", "ipv6.nxt == 4", "-T", "fields", "-e", "ipv6.src", "-e", "ip.src").CombinedOutput()
	if err != nil {
		l.t.Fatalf("tshark: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), b4Access+"\t"+pub.String()) {
		l.t.Fatalf("no IPv4-in-IPv6 from %s carrying %v on the access link:\n%.2000s", b4Access, pub, out)
	}
}
