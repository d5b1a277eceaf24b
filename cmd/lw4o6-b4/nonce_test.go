package main

import (
	"os"
	"path/filepath"
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
