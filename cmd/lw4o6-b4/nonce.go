package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// loadNonce returns the PCP mapping nonce kept in path, creating it on
// first use. The AFTR answers a renewal with another nonce NOT_AUTHORIZED
// for the rest of the binding's lifetime (RFC 6887 §11.3), so a B4 that
// restarted with a fresh nonce would be cut off for up to that long;
// keeping it is PROTOCOL.md §8 item 6.
func loadNonce(path string) (*[12]byte, error) {
	var n [12]byte
	if b, err := os.ReadFile(path); err == nil {
		d, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(d) != len(n) {
			return nil, fmt.Errorf("--nonce-file %s: not 24 hex digits; delete it to start afresh", path)
		}
		copy(n[:], d)
		return &n, nil
	} else if !os.IsNotExist(err) {
		return nil, fmt.Errorf("--nonce-file: %w", err)
	}
	if _, err := rand.Read(n[:]); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("--nonce-file: %w", err)
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(n[:])+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("--nonce-file: %w", err)
	}
	return &n, nil
}

// defaultNonceFile is where the nonce lives without --nonce-file: the
// user's state directory, one file per tunnel source.
func defaultNonceFile(src string) string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "lw4o6", "b4-"+strings.ReplaceAll(src, ":", "_")+".nonce")
}
