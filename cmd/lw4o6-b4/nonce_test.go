package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// PROTOCOL.md §8 item 6: the nonce survives a restart.
func TestNonceKept(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "b4.nonce")
	a, err := loadNonce(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := loadNonce(p)
	if err != nil {
		t.Fatal(err)
	}
	if *a != *b {
		t.Fatalf("nonce changed across loads: %x %x", a, b)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	os.WriteFile(p, []byte("zz\n"), 0o600)
	if _, err := loadNonce(p); err == nil {
		t.Fatal("a corrupt nonce file was accepted")
	}
}

// Issue 7 item 3: the state directory under systemd, XDG and a plain home.
func TestStateDir(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	for _, c := range []struct {
		env  func(string) string
		want string
	}{
		{env("STATE_DIRECTORY", "/var/lib/lw4o6-b4:/var/lib/other", "HOME", "/home/u"), "/var/lib/lw4o6-b4"},
		{env("XDG_STATE_HOME", "/x/state", "HOME", "/home/u"), "/x/state/lw4o6-b4"},
		{env("XDG_STATE_HOME", "relative", "HOME", "/home/u"), "/home/u/.local/state/lw4o6-b4"},
		{env("HOME", "/home/u"), "/home/u/.local/state/lw4o6-b4"},
	} {
		if got := stateDir(c.env); got != c.want {
			t.Errorf("stateDir = %q, want %q", got, c.want)
		}
	}
}

// The nonce goes into --state-dir; --nonce-file overrides it; a state
// directory that cannot be used is a warning (default place) or an error
// (given with --state-dir).
func TestNonceInStateDir(t *testing.T) {
	var logb bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logb, nil))
	dir := filepath.Join(t.TempDir(), "state")
	f := &failoverFlags{stateDir: dir}
	n1, err := f.nonce("", "2001:db8::b4", log)
	if err != nil || n1 == nil {
		t.Fatalf("nonce: %v %v", n1, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "b4-2001_db8__b4.nonce")); err != nil {
		t.Fatalf("nonce file not in the state directory: %v", err)
	}
	n2, _ := f.nonce("", "2001:db8::b4", log)
	if *n1 != *n2 {
		t.Fatal("nonce not kept in the state directory")
	}
	other := filepath.Join(t.TempDir(), "n")
	if n3, err := f.nonce(other, "2001:db8::b4", log); err != nil || *n3 == *n1 {
		t.Fatalf("--nonce-file did not override: %v", err)
	}
	if n, err := f.nonce("none", "2001:db8::b4", log); n != nil || err != nil {
		t.Fatal("--nonce-file none kept a nonce")
	}

	bad := &failoverFlags{stateDir: "/dev/null/state"}
	if _, err := bad.nonce("", "2001:db8::b4", log); err == nil {
		t.Fatal("an unusable --state-dir was accepted")
	}
	t.Setenv("STATE_DIRECTORY", "/dev/null/state")
	n, err := (&failoverFlags{}).nonce("", "2001:db8::b4", log)
	if err != nil || n != nil {
		t.Fatalf("default state directory unusable: %v %v, want a warning and a fresh nonce", n, err)
	}
	if !strings.Contains(logb.String(), "level=WARN") || !strings.Contains(logb.String(), "PCP nonce NOT kept") {
		t.Fatalf("no loud warning: %s", logb.String())
	}
}
