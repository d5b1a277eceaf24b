// Command lw4o6-b4 is the lwB4 daemon: it provisions a public IPv4 address
// and port set from the AFTR by PCP through its softwire, NATs its LAN into
// that set and tunnels it as IPv4-in-IPv6 to the AFTR. The LAN side is a TUN
// device, a SOCKS5 front end (no privileges needed), or both.
package main

import (
	"io"
	"log/slog"
	"os"

	"github.com/lw4o6/lw4o6/internal/cli"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	stderr = cli.NewLockedWriter(stderr)
	return cli.Daemon("lw4o6-b4", args, stdout, stderr, func(args []string, stderr io.Writer) (*options, slog.Level, error) {
		o, err := parseFlags(args, stderr)
		if err != nil {
			return nil, 0, err
		}
		return o, o.level, nil
	}, serve)
}
