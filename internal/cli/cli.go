// Package cli holds what the three commands share: a writer that
// serialises the logger's lines with the command's own messages.
package cli

import (
	"io"
	"sync"
)

// LockedWriter serialises writes from several goroutines (the slog
// handler and the command's own Fprintf calls share stderr).
type LockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// NewLockedWriter wraps w.
func NewLockedWriter(w io.Writer) *LockedWriter { return &LockedWriter{w: w} }

func (l *LockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
