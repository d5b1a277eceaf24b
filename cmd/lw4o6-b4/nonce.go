package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// maxNonceFile bounds what is read of a nonce file: 24 hex digits and a
// newline, with room for stray whitespace (issue 11 item 8: --nonce-file
// /dev/zero must not eat the memory).
const maxNonceFile = 256

// loadNonce returns the PCP mapping nonce kept in path, creating it on
// first use. The AFTR answers a renewal with another nonce NOT_AUTHORIZED
// for the rest of the binding's lifetime (RFC 6887 §11.3), so a B4 that
// restarted with a fresh nonce would be cut off for up to that long;
// keeping it is PROTOCOL.md §8 item 6.
func loadNonce(path string) (*[12]byte, error) {
	var n [12]byte
	b, err := readSmallFile(path, maxNonceFile)
	if err == nil {
		d, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(d) != len(n) {
			return nil, fmt.Errorf("nonce file %s: not 24 hex digits; delete it to start afresh", path)
		}
		copy(n[:], d)
		return &n, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("nonce file: %w", err)
	}
	if _, err := rand.Read(n[:]); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("nonce file: %w", err)
	}
	if err := writeFileAtomic(path, []byte(hex.EncodeToString(n[:])+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("nonce file: %w", err)
	}
	return &n, nil
}

// readSmallFile reads a regular file of at most limit octets: a device, a
// FIFO or a directory is refused before it is read, a longer file is an
// error.
func readSmallFile(path string, limit int64) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%v)", path, st.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path) // replaced since the check
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d octets", path, limit)
	}
	return b, nil
}

// writeFileAtomic writes data to a temporary file beside path, syncs it and
// renames it over path: a crash leaves the old file or the new one, never a
// torn nonce.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// stateDir is where the B4 keeps its state without --state-dir: systemd's
// StateDirectory= ($STATE_DIRECTORY, the first of a colon-separated list),
// else $XDG_STATE_HOME/lw4o6-b4, else ~/.local/state/lw4o6-b4 (the XDG
// Base Directory default). "" when none can be named (no HOME).
func stateDir(getenv func(string) string) string {
	if d := getenv("STATE_DIRECTORY"); d != "" {
		first, _, _ := strings.Cut(d, ":")
		return first
	}
	if d := getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "lw4o6-b4")
	}
	if h := getenv("HOME"); h != "" && filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "state", "lw4o6-b4")
	}
	if h, err := os.UserHomeDir(); err == nil && filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "state", "lw4o6-b4")
	}
	return ""
}

// nonceFileIn is the nonce file in dir: one per tunnel source, so B4s
// sharing a state directory do not share a nonce.
func nonceFileIn(dir, src string) string {
	return filepath.Join(dir, "b4-"+strings.NewReplacer(":", "_", "%", "_", "/", "_").Replace(src)+".nonce")
}
