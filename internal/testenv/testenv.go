// Package testenv decides what a test does when something it needs is
// missing: skip on a developer's machine, fail under CI. CI (.ci/run, with
// CI=true) installs every tool and provides every input the tests use, so
// a skip there would hide a test that never ran.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// CI reports whether the tests run under CI (CI=true, as .ci/run does).
func CI() bool { return os.Getenv("CI") == "true" }

// Missing ends the test for want of something .ci/run provides: it skips,
// or under CI fails.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("%s (CI=true: .ci/run provides it, so this is a failure)", msg)
		return
	}
	t.Skip(msg)
}

// LookPath returns the path of a tool, or ends the test through Missing.
func LookPath(t testing.TB, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		Missing(t, "needs %s: %v", tool, err)
	}
	return p
}

// RequireRoot ends the test through Missing unless it runs as root, as CI
// does.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root (%s)", why)
	}
}

// RequireFile ends the test through Missing unless path exists.
func RequireFile(t testing.TB, path, what string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Missing(t, "%s not found: %v", what, err)
	}
}
