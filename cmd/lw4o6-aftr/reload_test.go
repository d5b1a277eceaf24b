package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `lw4o6-aftr reload`: the target is required and checked; a bad
// --bindings file is reported with its file:line and nothing is sent.
func TestReloadCommand(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "aftr.pid")
	if err := os.WriteFile(pidFile, []byte("not a pid\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(bad, []byte("softwire-config {\n  binding-table {\n    softwire { ipv4 192.0.2.1; psid 1 }\n  }\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "--pid PID or --pid-file FILE is required"},
		{[]string{"--pid", "1"}, 2, "greater than 1"},
		{[]string{"--pid", "1234", "--pid-file", pidFile}, 2, "give one"},
		{[]string{"--pid-file", pidFile}, 2, `want a process ID, found "not a pid"`},
		{[]string{"--pid-file", filepath.Join(dir, "none")}, 2, "--pid-file"},
		{[]string{"--pid", "1234", "extra"}, 2, "unexpected argument"},
		// The file is checked before anything is sent: 1234 is never signalled.
		{[]string{"--pid", "1234", "--bindings", bad}, 1, "not sent: " + bad + ":3:"},
	} {
		var out, errOut bytes.Buffer
		code := run(append([]string{"reload"}, c.args...), &out, &errOut)
		if code != c.code || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("reload %q: exit %d, stderr %q; want %d and %q", c.args, code, errOut.String(), c.code, c.want)
		}
	}
}
