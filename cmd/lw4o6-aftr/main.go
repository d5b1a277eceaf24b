// Command lw4o6-aftr is the lwAFTR daemon: it serves PCP (MAP + PORT_SET)
// to B4s through their softwires, keeps the binding table, checks and
// decapsulates their IPv4-in-IPv6 traffic toward the Internet and
// encapsulates the replies. `lw4o6-aftr check` replays captures through the
// same data plane offline.
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
	if len(args) > 0 && args[0] == "check" {
		return runCheck(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "reload" {
		return runReload(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "provision" {
		return runProvision(args[1:], stdout, stderr)
	}
	return cli.Daemon("lw4o6-aftr", args, stdout, stderr, func(args []string, stderr io.Writer) (*options, slog.Level, error) {
		o, err := parseFlags(args, stderr)
		if err != nil {
			return nil, 0, err
		}
		return o, o.level, nil
	}, serve)
}
