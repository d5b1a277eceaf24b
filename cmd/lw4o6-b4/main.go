// Command lw4o6-b4 is the lwB4 daemon: it provisions a public IPv4 address
// and port set from the AFTR by PCP through its softwire, NATs its LAN into
// that set and tunnels it as IPv4-in-IPv6 to the AFTR. The LAN side is a TUN
// device, a SOCKS5 front end (no privileges needed), or both.
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
	o, err := parseFlags(args, stderr)
	if errors.Is(err, errHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "lw4o6-b4: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, o, stdout, log); err != nil {
		fmt.Fprintf(stderr, "lw4o6-b4: %v\n", err)
		return 1
	}
	return 0
}
