// Package readme runs every shell block of README.md exactly as written, so
// that the README cannot drift from the code.
//
// A ```sh block runs on its own in bash (-e -o pipefail) in the repository,
// unless the HTML comment on the line before it says otherwise:
//
//	<!-- readme-test: skip="why" -->         not run (a few only, each with a reason)
//	<!-- readme-test: session=NAME ... -->   run in one bash with the session's other
//	                                          blocks, in README order, as a user types them
//	                                          into one shell (background jobs carry over)
//	   netns=NS        the session's bash runs in network namespace NS of the
//	                   README's real-mode topology, which the test builds (root)
//	   wait="TEXT"     after the block, wait for TEXT on the session's stdout
//	                   (a daemon's "provisioned:" line) rather than for the
//	                   block to end (it may start a daemon in the foreground)
//	   fetch=FILE      the block's output must hold FILE of the repository
//	                   whole: it fetched it from the test's HTTP server
//	   expect="TEXT"   the block's stdout must hold TEXT (lone blocks too)
//
// The environment is controlled: the daemons keep state under a temporary
// XDG_STATE_HOME, the real-mode binaries are on PATH, the laptop lab's HTTP
// server (127.0.0.1:8000, the repository's files) and DHCPv6 server
// ([::1]:5547) are the test's own.
package readme

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/dhcpv6/server6"
	"golang.org/x/sys/unix"

	"github.com/lw4o6/lw4o6/b4/dhcp6"
	"github.com/lw4o6/lw4o6/internal/testenv"
	"github.com/lw4o6/lw4o6/test/internal/daemon"
)

const repo = "../.."

// block is one ```sh block of README.md and the annotation before it.
type block struct {
	line int // of the opening fence
	text string
	ann  map[string]string
}

func (b block) String() string { return fmt.Sprintf("README.md:%d", b.line) }

var annRE = regexp.MustCompile(`^<!-- readme-test: (.*) -->$`)
var kvRE = regexp.MustCompile(`(\w+)(?:=("[^"]*"|\S+))?`)

// knownKeys are the annotation keys the test understands; any other is an
// error, so that a typo cannot leave a block unchecked.
var knownKeys = []string{"skip", "session", "netns", "wait", "fetch", "expect"}

func parseREADME(t *testing.T) []block {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	var blocks []block
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```sh" {
			continue
		}
		b := block{line: i + 1, ann: map[string]string{}}
		if i > 0 {
			if m := annRE.FindStringSubmatch(strings.TrimSpace(lines[i-1])); m != nil {
				for _, kv := range kvRE.FindAllStringSubmatch(m[1], -1) {
					if !slices.Contains(knownKeys, kv[1]) {
						t.Fatalf("%s: unknown readme-test key %q", b, kv[1])
					}
					b.ann[kv[1]] = strings.Trim(kv[2], `"`)
				}
			} else if strings.Contains(lines[i-1], "readme-test") {
				t.Fatalf("%s: malformed annotation %q", b, lines[i-1])
			}
		}
		var body []string
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			body = append(body, lines[i])
		}
		if i == len(lines) {
			t.Fatalf("%s: unterminated block", b)
		}
		b.text = strings.Join(body, "\n") + "\n"
		blocks = append(blocks, b)
	}
	return blocks
}

// The README's blocks are all accounted for: each runs below, or is one of
// a few skipped with a reason.
func TestREADMEBlocks(t *testing.T) {
	blocks := parseREADME(t)
	if len(blocks) < 5 {
		t.Fatalf("only %d sh blocks in README.md", len(blocks))
	}
	skipped := 0
	for _, b := range blocks {
		if r, ok := b.ann["skip"]; ok {
			skipped++
			if len(r) < 10 {
				t.Errorf("%s: skipped without a reason (%q)", b, r)
			}
		}
		if strings.Contains(b.text, "example.org") || strings.Contains(b.text, "example.com") {
			t.Errorf("%s: a command a test runs must not need the Internet", b)
		}
		if _, ok := b.ann["netns"]; ok && b.ann["session"] == "" {
			t.Errorf("%s: netns= without session=", b)
		}
	}
	if skipped > 3 {
		t.Errorf("%d blocks skipped: the README's commands are meant to run", skipped)
	}
	checkAddresses(t)
}

// allowed are the address ranges README.md may use: documentation and
// benchmark ranges, the softwire's 192.0.0.0/29, loopback, the unspecified
// address and link-local multicast.
var allowed = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("192.0.0.0/29"), netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("0.0.0.0/32"), netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("ff02::/16"),
}

var addrTokenRE = regexp.MustCompile(`[0-9A-Fa-f:.]*[:.][0-9A-Fa-f:.]*`)

func checkAddresses(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range addrTokenRE.FindAllString(string(src), -1) {
		tok = strings.TrimRight(strings.TrimLeft(tok, "."), ".:")
		a, err := netip.ParseAddr(tok)
		if err != nil {
			continue
		}
		if !slices.ContainsFunc(allowed, func(p netip.Prefix) bool { return p.Contains(a) }) {
			t.Errorf("README.md uses %s, outside the documentation ranges", a)
		}
	}
}

// Each block outside a session, on its own.
func TestREADMELoneBlocks(t *testing.T) {
	env := testEnv(t, "")
	for _, b := range parseREADME(t) {
		if b.ann["session"] != "" || b.ann["skip"] != "" {
			continue
		}
		t.Run(fmt.Sprint(b.line), func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command("bash", "-e", "-o", "pipefail", "-c", b.text)
			cmd.Dir, cmd.Env = repo, env
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("%s: %v\n%s\n%s", b, err, b.text, out.String())
				}
			case <-time.After(3 * time.Minute):
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-done
				t.Fatalf("%s did not end within 3 min:\n%s\n%s", b, b.text, out.String())
			}
			if e := b.ann["expect"]; e != "" && !strings.Contains(out.String(), e) {
				t.Fatalf("%s: output lacks %q:\n%s", b, e, out.String())
			}
			t.Logf("%s: ok\n%s", b, b.text)
		})
	}
}

// testEnv is the environment the blocks run in: state in a temporary
// XDG_STATE_HOME (never the user's), and bin on PATH when given.
func testEnv(t *testing.T, bin string) []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "STATE_DIRECTORY=") && !strings.HasPrefix(e, "XDG_STATE_HOME=") &&
			!strings.HasPrefix(e, "PATH=") {
			env = append(env, e)
		}
	}
	state := t.TempDir()
	os.Chmod(state, 0o755)
	path := os.Getenv("PATH")
	if bin != "" {
		path = bin + ":" + path
	}
	return append(env, "XDG_STATE_HOME="+state, "PATH="+path)
}

// session is one bash fed a session's blocks on its stdin.
type session struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	mu    sync.Mutex
	out   bytes.Buffer // stdout and stderr, for the failure report
	done  chan error
	seq   int
}

func startSession(t *testing.T, name string, env []string, argv ...string) *session {
	s := &session{t: t, name: name, lines: make(chan string, 1024), done: make(chan error, 1)}
	argv = append(argv, "bash", "-e", "-o", "pipefail", "-s")
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Dir, s.cmd.Env = repo, env
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var err error
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = writerFunc(func(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.out.Write(p) })
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.mu.Lock()
			s.out.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			s.lines <- sc.Text()
		}
		close(s.lines)
		s.done <- s.cmd.Wait()
	}()
	return s
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func (s *session) fail(format string, args ...any) {
	s.t.Helper()
	s.mu.Lock()
	out := s.out.String()
	s.mu.Unlock()
	s.t.Fatalf("session %s: %s\nsession output:\n%s", s.name, fmt.Sprintf(format, args...), out)
}

// run feeds b to the session and waits until it has ended (or, with
// wait=, printed its line), checking a fetch= file in its stdout.
func (s *session) run(b block) {
	s.t.Helper()
	s.seq++
	marker := fmt.Sprintf("@@readme-block-%d-done", s.seq)
	if _, err := io.WriteString(s.stdin, b.text+"echo "+marker+"\n"); err != nil {
		s.fail("%s: writing the block: %v", b, err)
	}
	want := map[string]bool{}
	if w := b.ann["wait"]; w != "" {
		want[w] = true // a foreground daemon: its line, not its end
	} else {
		want[marker] = true
	}
	var got strings.Builder
	timeout := time.After(2 * time.Minute) // the first block builds the daemons
	for len(want) > 0 {
		select {
		case l, ok := <-s.lines:
			if !ok {
				s.fail("%s: bash ended (a command failed) before %q", b, keys(want))
			}
			got.WriteString(l + "\n")
			for w := range want {
				if strings.Contains(l, w) {
					delete(want, w)
				}
			}
		case <-timeout:
			s.fail("%s: no %q within 2 min", b, keys(want))
		}
	}
	if e := b.ann["expect"]; e != "" && !strings.Contains(got.String(), e) {
		s.fail("%s: its output lacks %q:\n%s", b, e, got.String())
	}
	if f := b.ann["fetch"]; f != "" {
		content, err := os.ReadFile(filepath.Join(repo, f))
		if err != nil {
			s.t.Fatal(err)
		}
		if !strings.Contains(got.String(), string(content)) {
			s.fail("%s: %s did not arrive whole; the block printed:\n%s", b, f, got.String())
		}
	}
	s.t.Logf("%s: ok (session %s)\n%s", b, s.name, b.text)
}

// end closes the session's stdin and waits for bash to end; with stop, it
// first sends SIGTERM to the session's process group (a daemon in the
// foreground, as a user's Ctrl-C would).
func (s *session) end(stop bool) {
	s.t.Helper()
	s.stdin.Close()
	if stop {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	}
	go func() {
		for range s.lines {
		}
	}()
	select {
	case err := <-s.done:
		if err != nil && !stop {
			s.fail("bash exited: %v", err)
		}
	case <-time.After(20 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		s.fail("did not end within 20 s")
	}
	// Nothing of the session may be left running.
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(-s.cmd.Process.Pid, 0) == nil; {
		if time.Now().After(deadline) {
			syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			s.fail("processes left running after the session ended")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func keys(m map[string]bool) []string {
	var k []string
	for w := range m {
		k = append(k, w)
	}
	return k
}

func sessionBlocks(t *testing.T, name string) []block {
	var bs []block
	for _, b := range parseREADME(t) {
		if b.ann["session"] == name && b.ann["skip"] == "" {
			bs = append(bs, b)
		}
	}
	if len(bs) == 0 {
		t.Fatalf("README.md has no session=%s blocks", name)
	}
	return bs
}

// serveHTTP serves the repository's files on ln, as
// `python3 -m http.server` in the repository would.
func serveHTTP(t *testing.T, ln net.Listener) {
	srv := &http.Server{Handler: http.FileServer(http.Dir(repo))}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// The laptop lab, unprivileged: the session=laptop blocks build and start
// the AFTR and a B4 over the UDP underlay on loopback, fetch a file from a
// local HTTP server through the B4's SOCKS5 front end with curl, provision a
// second B4 statically and by DHCPv6 (the test's DHCPv6 server), and stop
// the daemons.
func TestREADMELaptopLab(t *testing.T) {
	testenv.LookPath(t, "curl")
	blocks := sessionBlocks(t, "laptop")
	daemon.LockLaptopLab(t) // its ports are examples/laptop-lab/run.sh's too

	ln, err := net.Listen("tcp4", "127.0.0.1:8000")
	if err != nil {
		t.Fatalf("the README's HTTP server address: %v", err)
	}
	serveHTTP(t, ln)
	dhcpServer(t, "[::1]:5547", s46Option("2001:db8::1", "192.0.2.2", "2001:db8:b::1", 5, 2))

	s := startSession(t, "laptop", testEnv(t, ""))
	t.Cleanup(func() { syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL) }) // a failed test's leftovers
	for _, b := range blocks {
		s.run(b)
	}
	s.end(false)
}

// s46Option is OPTION_S46_CONT_LW (RFC 7598 §4.2) with S46_BR, S46_V4V6BIND
// and S46_PORTPARAMS (offset 0: a contiguous block of 2^(16-psidLen) ports).
func s46Option(br, ipv4, b4 string, psidLen, psid int) []byte {
	p := uint16(psid) << (16 - psidLen)
	v4 := netip.MustParseAddr(ipv4).As4()
	return dopt(dhcp6.OptS46ContLW, dopt(dhcp6.OptS46BR, a16(br)),
		dopt(dhcp6.OptS46V4V6Bind, v4[:], []byte{128}, a16(b4),
			dopt(dhcp6.OptS46PortPar, []byte{0, byte(psidLen), byte(p >> 8), byte(p)})))
}

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

// dhcpServer answers Information-Requests on addr with opts (a server built
// from the same library as the B4's client).
func dhcpServer(t *testing.T, addr string, opts ...[]byte) {
	conn, err := net.ListenPacket("udp6", addr)
	if err != nil {
		testenv.Missing(t, "the README's DHCPv6 server address %s: %v", addr, err)
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
}

// The real mode, as root: the session=real blocks run on the hosts of the
// README's topology, one network namespace each, which the test builds:
//
//	lan (eth0 198.18.0.2/24, default via 198.18.0.1)
//	  -- b4 (lan0 198.18.0.1/24; acc0 2001:db8:a::2/64)
//	  -- aftr (acc0 2001:db8:a::1/64; inet0 203.0.113.1/24)
//	  -- inet (eth0 203.0.113.10/24, 192.0.2.0/24 via 203.0.113.1; HTTP on :8000)
func TestREADMERealMode(t *testing.T) {
	testenv.RequireRoot(t, "network namespaces, TUN, raw sockets")
	testenv.LookPath(t, "ip")
	testenv.RequireFile(t, "/dev/net/tun", "/dev/net/tun")
	blocks := sessionBlocks(t, "real")
	for _, b := range blocks {
		if b.ann["netns"] == "" {
			t.Fatalf("%s: a real-mode block needs netns=", b)
		}
		for _, tool := range []string{"curl", "natpmpc"} {
			if strings.Contains(b.text, tool+" ") {
				testenv.LookPath(t, tool)
			}
		}
	}
	bin := daemon.Build(t)
	n := buildTopology(t)

	var ln net.Listener
	if err := n.inNS("inet", func() (err error) {
		ln, err = net.Listen("tcp4", "203.0.113.10:8000")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	serveHTTP(t, ln)

	env := testEnv(t, bin)
	sessions := map[string]*session{}
	var order []*session
	defer func() {
		// The LAN first, then the B4 (it deletes its binding at the AFTR),
		// then the AFTR: each daemon stopped as Ctrl-C would.
		for i := len(order) - 1; i >= 0; i-- {
			order[i].end(true)
		}
	}()
	for _, b := range blocks {
		ns := b.ann["netns"]
		s := sessions[ns]
		if s == nil {
			s = startSession(t, "real/"+ns, env, "ip", "netns", "exec", n.ns(ns))
			pid := s.cmd.Process.Pid
			t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
			sessions[ns] = s
			order = append(order, s)
		}
		s.run(b)
	}
}

type topology struct {
	t      *testing.T
	suffix string
}

func (n *topology) ns(name string) string { return "lw4o6rd" + name + n.suffix }

func (n *topology) sh(args ...string) {
	n.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		n.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (n *topology) in(ns string, args ...string) {
	n.t.Helper()
	n.sh(append([]string{"ip", "netns", "exec", n.ns(ns)}, args...)...)
}

func buildTopology(t *testing.T) *topology {
	n := &topology{t: t, suffix: fmt.Sprint(os.Getpid() % 100000)}
	for _, name := range []string{"lan", "b4", "aftr", "inet"} {
		n.sh("ip", "netns", "add", n.ns(name))
		full := n.ns(name)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", full).Run() })
		n.in(name, "ip", "link", "set", "lo", "up")
	}
	veth := func(a, ai, b, bi string) {
		n.sh("ip", "link", "add", "rd"+ai+n.suffix, "netns", n.ns(a), "type", "veth", "peer", "name", "rd"+bi+n.suffix, "netns", n.ns(b))
		n.in(a, "ip", "link", "set", "rd"+ai+n.suffix, "name", ai)
		n.in(b, "ip", "link", "set", "rd"+bi+n.suffix, "name", bi)
		n.in(a, "ip", "link", "set", ai, "up")
		n.in(b, "ip", "link", "set", bi, "up")
	}
	veth("lan", "eth0", "b4", "lan0")
	veth("b4", "acc0", "aftr", "acc0")
	veth("aftr", "inet0", "inet", "eth0")
	n.in("lan", "ip", "addr", "add", "198.18.0.2/24", "dev", "eth0")
	n.in("lan", "ip", "route", "add", "default", "via", "198.18.0.1")
	n.in("b4", "ip", "addr", "add", "198.18.0.1/24", "dev", "lan0")
	n.in("b4", "ip", "addr", "add", "2001:db8:a::2/64", "dev", "acc0", "nodad")
	n.in("aftr", "ip", "addr", "add", "2001:db8:a::1/64", "dev", "acc0", "nodad")
	n.in("aftr", "ip", "addr", "add", "203.0.113.1/24", "dev", "inet0")
	n.in("inet", "ip", "addr", "add", "203.0.113.10/24", "dev", "eth0")
	n.in("inet", "ip", "route", "add", "192.0.2.0/24", "via", "203.0.113.1")
	return n
}

// inNS runs f on a thread inside namespace ns: sockets it opens stay there.
func (n *topology) inNS(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace switch
		fd, err := unix.Open("/run/netns/"+n.ns(ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
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
