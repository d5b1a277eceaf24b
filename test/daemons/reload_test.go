package daemons

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/test/internal/daemon"
)

// reloadConf is a softwire-config whose softwires share 198.51.100.100
// (psid-length 4): psids[i] bound to b4s[i]; mtu is internal-interface's.
func reloadConf(mtu int, psids []int, b4s []string) string {
	var sw strings.Builder
	for i, p := range psids {
		fmt.Fprintf(&sw, "\n    softwire { ipv4 198.51.100.100; psid %d; b4-ipv6 %s; br-address 2001:db8::1;\n      port-set { psid-length 4; } }", p, b4s[i])
	}
	return `softwire-config {
  binding-table {` + sw.String() + `
  }
  external-interface { error-rate-limiting { packets 1000; } }
  internal-interface { mtu ` + fmt.Sprint(mtu) + `; error-rate-limiting { packets 1000; } }
}
`
}

// Static bindings are reloaded on SIGHUP (and by `lw4o6-aftr reload`):
// the daemon logs what changed, the new table carries traffic, the old
// one's vanished binding does not, a PCP B4 keeps working throughout, and
// a bad file is refused with its file:line, the table kept.
func TestReloadStaticBindings(t *testing.T) {
	dir := daemon.Build(t)
	under, socks := freePort(t, "udp"), freePort(t, "tcp")

	// The "Internet": a loopback UDP echo server; it also reports what
	// came from the static B4s (their payloads start with "static").
	uc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	got := make(chan string, 64)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := uc.ReadFrom(buf)
			if err != nil {
				return
			}
			if bytes.HasPrefix(buf[:n], []byte("static")) {
				got <- string(buf[:n])
				continue
			}
			uc.WriteTo(buf[:n], from)
		}
	}()
	server := uc.LocalAddr().(*net.UDPAddr).AddrPort()

	confDir := stateDir(t) // owned by the daemons' user
	conf := filepath.Join(confDir, "lwaftr.conf")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// psid 1 stays, 2 goes, 4 moves to another B4, 3 comes.
	write(reloadConf(1500, []int{1, 2, 4}, []string{"2001:db8:a::1", "2001:db8:b::1", "2001:db8:d::1"}))

	aftrCmd := exec.Command(dir+"/lw4o6-aftr", "--ipv6", "2001:db8::1", "--underlay", "udp",
		"--underlay-listen", fmt.Sprintf("127.0.0.1:%d", under), "--ipv4-side", "host", "--egress-allow-loopback",
		"--pool", "192.0.2.0/30", "--ports-per-b4", "4096", "--state-dir", stateDir(t), "--bindings", conf)
	aftrOut, aftrLog := startWithLog(t, aftrCmd)
	daemon.WaitLine(t, aftrOut, "AFTR ")
	b4Out := start(t, dir+"/lw4o6-b4", "--aftr", "2001:db8::1", "--ipv6", "2001:db8:b4::1", "--underlay", "udp",
		"--underlay-peer", fmt.Sprintf("127.0.0.1:%d", under), "--socks5", fmt.Sprintf("127.0.0.1:%d", socks), "--nonce-file", "none",
		"--allow-loopback")
	daemon.WaitLine(t, b4Out, "provisioned:")
	// The PCP (dynamic) binding, made before the reload.
	waitPCPEcho := func() {
		t.Helper()
		if err := socksUDPEcho(fmt.Sprintf("127.0.0.1:%d", socks), server, []byte("pcp b4 echo")); err != nil {
			t.Fatalf("UDP through the PCP B4: %v", err)
		}
	}
	waitPCPEcho()

	ul, err := net.Dial("udp4", fmt.Sprintf("127.0.0.1:%d", under))
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	// fromStatic sends, as the static B4 b4, a UDP datagram from a port
	// of psid to the server, until it arrives or 20 s pass.
	fromStatic := func(b4 string, psid int, msg string) bool {
		t.Helper()
		ip4 := packet.AppendUDP4(nil, packet.IPv6HeaderLen, [4]byte{198, 51, 100, 100}, [4]byte{127, 0, 0, 1}, uint16(psid<<12|100), server.Port(), 64, []byte(msg))
		pkt := packet.Encapsulate(ip4, packet.IPv6HeaderLen, netip.MustParseAddr(b4).As16(), netip.MustParseAddr("2001:db8::1").As16(), 64)
		deadline := time.After(20 * time.Second)
		for {
			if _, err := ul.Write(pkt); err != nil {
				t.Fatal(err)
			}
			select {
			case m := <-got:
				if m == msg {
					return true
				}
			case <-time.After(200 * time.Millisecond):
			case <-deadline:
				return false
			}
		}
	}
	if !fromStatic("2001:db8:b::1", 2, "static psid 2 before") {
		t.Fatal("static binding psid 2 carries no traffic before the reload")
	}
	if !fromStatic("2001:db8:d::1", 4, "static psid 4 before") {
		t.Fatal("static binding psid 4 carries no traffic before the reload")
	}

	// The good file, through `lw4o6-aftr reload` (which checks it first).
	write(reloadConf(1400, []int{1, 3, 4}, []string{"2001:db8:a::1", "2001:db8:c::1", "2001:db8:e::1"}))
	out, err := exec.Command(dir+"/lw4o6-aftr", "reload", "--pid", fmt.Sprint(aftrCmd.Process.Pid), "--bindings", conf).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "sent SIGHUP to ") {
		t.Fatalf("lw4o6-aftr reload: %v\n%s", err, out)
	}
	l := waitLog(t, aftrLog, `msg="static bindings reloaded"`)
	for _, s := range []string{"added=1", "removed=1", "changed=1", "unchanged=1", "2001:db8:c::1 198.51.100.100 a=0,k=4,psid=3"} {
		if !strings.Contains(l, s) {
			t.Errorf("reload log line lacks %q: %s", s, l)
		}
	}
	if l := waitLog(t, aftrLog, "needs a restart"); !strings.Contains(l, "MTU: 1500 -> 1400") {
		t.Errorf("restart line %q", l)
	}
	if !fromStatic("2001:db8:c::1", 3, "static psid 3 added") {
		t.Error("the added static binding carries no traffic")
	}
	if !fromStatic("2001:db8:e::1", 4, "static psid 4 moved") {
		t.Error("the changed static binding carries no traffic for its new B4")
	}
	waitPCPEcho() // the dynamic binding is untouched

	// The removed binding: its B4's packets are refused with ICMPv6
	// destination unreachable, source address failed ingress/egress policy
	// (1/5, RFC 7596 §6.2), sent back through the underlay socket the
	// static B4 was learned from.
	ip4 := packet.AppendUDP4(nil, packet.IPv6HeaderLen, [4]byte{198, 51, 100, 100}, [4]byte{127, 0, 0, 1}, 2<<12|100, server.Port(), 64, []byte("static psid 2 removed"))
	removed := packet.Encapsulate(ip4, packet.IPv6HeaderLen, netip.MustParseAddr("2001:db8:b::1").As16(), netip.MustParseAddr("2001:db8::1").As16(), 64)
	refused := false
	buf := make([]byte, 2048)
	for deadline := time.Now().Add(20 * time.Second); !refused && time.Now().Before(deadline); {
		ul.Write(removed)
		ul.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, err := ul.Read(buf)
			if err != nil {
				break
			}
			p := buf[:n]
			if n >= 48 && p[6] == 58 && netip.AddrFrom16([16]byte(p[24:40])) == netip.MustParseAddr("2001:db8:b::1") && p[40] == 1 && p[41] == 5 {
				refused = true
				break
			}
		}
	}
	if !refused {
		t.Error("the removed static binding's packet got no ICMPv6 1/5")
	}
	select {
	case m := <-got:
		t.Errorf("the server got %q after the reload removed its binding", m)
	default:
	}

	// A bad file: `reload --bindings` refuses to send it; SIGHUP makes the
	// daemon refuse it with file:line; the table stays.
	bad := reloadConf(1400, []int{1, 3}, []string{"2001:db8:a::1", "2001:db8:c::1"})
	bad = strings.Replace(bad, "psid 3;", "psid 3", 1)
	write(bad)
	at := fmt.Sprintf("%s:%d:", conf, strings.Count(bad[:strings.Index(bad, "psid 3")], "\n")+1)
	out, err = exec.Command(dir+"/lw4o6-aftr", "reload", "--pid", fmt.Sprint(aftrCmd.Process.Pid), "--bindings", conf).CombinedOutput()
	if err == nil || !strings.Contains(string(out), at) || !strings.Contains(string(out), "not sent") {
		t.Errorf("reload of a bad file: %v\n%s", err, out)
	}
	if err := aftrCmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if l := waitLog(t, aftrLog, `msg="static bindings not reloaded`); !strings.Contains(l, at) {
		t.Errorf("refusal %q does not name %s", l, at)
	}
	if !fromStatic("2001:db8:e::1", 4, "static psid 4 kept") {
		t.Error("the old table is gone after a refused file")
	}
	waitPCPEcho()
}

// startWithLog is start with the daemon's log (stderr) lines too.
func startWithLog(t *testing.T, cmd *exec.Cmd) (stdout, log <-chan string) {
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	pr, pw := io.Pipe()
	lines := make(chan string, 1024)
	go func() {
		s := bufio.NewScanner(pr)
		for s.Scan() {
			select {
			case lines <- s.Text():
			default: // nobody reads them: keep the daemon writing
			}
		}
		io.Copy(io.Discard, pr)
	}()
	cmd.Stderr = pw
	out := daemon.Start(t, cmd)
	t.Cleanup(func() { pw.Close() })
	return out, lines
}

// waitLog returns the first log line containing s within 20 s.
func waitLog(t *testing.T, log <-chan string, s string) string {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l := <-log:
			if strings.Contains(l, s) {
				return l
			}
		case <-timeout:
			t.Fatalf("no log line with %q", s)
		}
	}
}
