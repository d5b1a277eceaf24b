package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

// --version on the daemon and every subcommand: one line on stdout naming
// the command, the module and the Go version; exit 0; nothing else run
// (no other flag is needed).
func TestVersion(t *testing.T) {
	for _, c := range []struct {
		args []string
		name string
	}{
		{[]string{"--version"}, "lw4o6-aftr "},
		{[]string{"--ipv6", "2001:db8::1", "--version"}, "lw4o6-aftr "},
		{[]string{"check", "--version"}, "lw4o6-aftr check "},
		{[]string{"provision", "--version"}, "lw4o6-aftr provision "},
		{[]string{"reload", "--version"}, "lw4o6-aftr reload "},
	} {
		var out, errOut bytes.Buffer
		code := run(c.args, &out, &errOut)
		s := out.String()
		if code != 0 || !strings.HasPrefix(s, c.name) || !strings.Contains(s, "github.com/lw4o6/lw4o6") ||
			!strings.Contains(s, runtime.Version()) || strings.Count(s, "\n") != 1 || errOut.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", c.args, code, s, errOut.String())
		}
	}
}
