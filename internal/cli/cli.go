// Package cli holds what the commands share: a writer that serialises the
// logger's lines with the command's own messages, and the daemons' main
// (flags, logger, signals, exit codes).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
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

// ErrHelp is returned by a daemon's flag parser when --help was asked for.
var ErrHelp = errors.New("help")

// Daemon runs a daemon's main: parse the flags (exit 2 on a bad one, 0 on
// --help, printing the version on --version), log to stderr at the level the flags chose, serve until SIGINT
// or SIGTERM (exit 1 if serving fails).
func Daemon[O any](name string, args []string, stdout, stderr io.Writer,
	parse func(args []string, stderr io.Writer) (O, slog.Level, error),
	serve func(ctx context.Context, o O, stdout io.Writer, log *slog.Logger) error) int {
	o, level, err := parse(args, stderr)
	if errors.Is(err, ErrHelp) {
		return 0
	}
	if errors.Is(err, ErrVersion) {
		return PrintVersion(stdout, name)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, o, stdout, log); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
