package main

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

// FuzzNonceFile: whatever a nonce file holds, loadNonce returns an error or
// the nonce the file spells in hex, never panics, and never accepts more
// than maxNonceFile octets.
func FuzzNonceFile(f *testing.F) {
	f.Add([]byte("00112233445566778899aabb\n"))
	f.Add([]byte("zz"))
	f.Add(bytes.Repeat([]byte("0"), maxNonceFile+1))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "n")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		n, err := loadNonce(p)
		if err != nil {
			return
		}
		if len(data) > maxNonceFile {
			t.Fatalf("accepted %d octets", len(data))
		}
		if !bytes.Contains(bytes.ToLower(data), []byte(hex.EncodeToString(n[:]))) {
			t.Fatalf("nonce %x is not what %q says", n, data)
		}
	})
}
