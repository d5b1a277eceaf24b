// Command lw4o6-aftr is the lwAFTR daemon: it serves PCP (MAP + PORT_SET)
// to B4s through their softwires, keeps the binding table, checks and
// decapsulates their IPv4-in-IPv6 traffic toward the Internet and
// encapsulates the replies. `lw4o6-aftr check` replays captures through the
// same data plane offline.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/lw4o6/lw4o6/internal/cli"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	stderr = cli.NewLockedWriter(stderr)
	if len(args) > 0 && args[0] == "check" {
		return runCheck(args[1:], stdout, stderr)
	}
	o, err := parseFlags(args, stderr)
	if errors.Is(err, errHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "lw4o6-aftr: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, o, stdout, log); err != nil {
		fmt.Fprintf(stderr, "lw4o6-aftr: %v\n", err)
		return 1
	}
	return 0
}
