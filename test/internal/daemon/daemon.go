// Package daemon runs the built lw4o6 daemons for the end-to-end tests in
// test/: it builds them once, starts them, reads their status lines and
// stops them with SIGTERM, failing the test if they do not stop cleanly.
package daemon

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Build compiles lw4o6-b4 and lw4o6-aftr once per test binary into a
// world-readable directory (so that they can also run as nobody) and
// returns it.
func Build(t testing.TB) string {
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "lw4o6-bin"); buildErr != nil {
			return
		}
		os.Chmod(binDir, 0o755)
		out, err := exec.Command("go", "build", "-o", binDir+"/",
			"github.com/lw4o6/lw4o6/cmd/lw4o6-b4", "github.com/lw4o6/lw4o6/cmd/lw4o6-aftr").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// Start runs cmd and returns its stdout lines. At cleanup it sends SIGTERM
// and fails the test if the daemon does not exit cleanly within 10 s; its
// stderr is logged when the test failed, and written to cmd.Stderr if set.
func Start(t testing.TB, cmd *exec.Cmd) <-chan string {
	t.Helper()
	name := filepath.Base(cmd.Args[len(cmd.Args)-1])
	for _, a := range cmd.Args {
		if strings.HasPrefix(filepath.Base(a), "lw4o6-") {
			name = filepath.Base(a)
			break
		}
	}
	var mu sync.Mutex
	var stderr bytes.Buffer
	tee := cmd.Stderr // a caller's stderr writer gets the lines too
	cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		if tee != nil {
			tee.Write(p)
		}
		return stderr.Write(p)
	})
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 128)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s exited: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Errorf("%s did not stop on SIGTERM", name)
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("%s stderr:\n%s", name, stderr.String())
			mu.Unlock()
		}
	})
	return lines
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// WaitLine returns the first line starting with prefix, failing the test
// if none comes within 20 s or the daemon exits first.
func WaitLine(t testing.TB, lines <-chan string, prefix string) string {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("daemon exited before printing %q", prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			t.Fatalf("no %q line within 20 s", prefix)
		}
	}
}

// ServeDownload answers each connection on ln: the client sends an
// 8-octet count n, the server sends n zero octets and closes. Each accepted
// connection's remote address is sent on seen if it is not nil.
func ServeDownload(ln net.Listener, seen chan<- net.Addr) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if seen != nil {
				seen <- c.RemoteAddr()
			}
			var hdr [8]byte
			if _, err := io.ReadFull(c, hdr[:]); err == nil {
				io.CopyN(c, zeros{}, int64(binary.BigEndian.Uint64(hdr[:])))
			}
		}()
	}
}

// Download asks a ServeDownload server on c for n octets and reads them.
func Download(c net.Conn, n int) error {
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(n))
	if _, err := c.Write(hdr[:]); err != nil {
		return err
	}
	got, err := io.Copy(io.Discard, c)
	if err != nil || got != int64(n) {
		return fmt.Errorf("%d of %d octets: %v", got, n, err)
	}
	return nil
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// LockLaptopLab holds, until the test ends, a lock that every test running
// the laptop lab's fixed addresses (127.0.0.1:4666, 127.0.0.1:1080, as
// README.md and examples/laptop-lab/run.sh give them) takes: the test
// binaries of several packages run at once.
func LockLaptopLab(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "lw4o6-laptop-lab.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
}
