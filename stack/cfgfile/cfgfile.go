// Package cfgfile reads configuration and state files with a bound: a
// regular file no larger than the caller says, never a device or a pipe
// that could feed the process without end (`--bindings /dev/zero`).
package cfgfile

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrNotRegular and ErrTooLarge are returned, wrapped with the path, for
// files ReadFile refuses.
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrTooLarge   = errors.New("file too large")
)

// Open opens the regular file at path for reading, or returns an error
// when it is not a regular file or holds more than max octets. A caller
// that streams the file must still stop after max octets (a file can grow
// after the check); ReadFile does.
func Open(path string, max int64) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: %w (%v)", path, ErrNotRegular, fi.Mode().Type())
	}
	if fi.Size() > max {
		f.Close()
		return nil, fmt.Errorf("%s: %w: %d octets, at most %d", path, ErrTooLarge, fi.Size(), max)
	}
	return f, nil
}

// ReadFile returns the contents of the regular file at path, or an error
// when it is not a regular file or holds more than max octets. The size is
// checked before reading and enforced while reading, so a file that grows
// meanwhile cannot exceed it either.
func ReadFile(path string, max int64) ([]byte, error) {
	f, err := Open(path, max)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: %w: more than %d octets", path, ErrTooLarge, max)
	}
	return b, nil
}
