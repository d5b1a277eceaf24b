package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/lw4o6/lw4o6/aftr"
	"github.com/lw4o6/lw4o6/internal/cli"
	"github.com/spf13/pflag"
)

// reloadBindings is what the daemon does on SIGHUP: re-read --bindings
// and apply the difference to the static bindings (aftr.ReloadStatic
// logs what changed). A refused file changes nothing.
func reloadBindings(a *aftr.AFTR, path string, log *slog.Logger) {
	if path == "" {
		log.Warn("SIGHUP: nothing to reload (no --bindings file)")
		return
	}
	if _, err := a.ReloadStatic(path); err != nil {
		log.Error("static bindings not reloaded: the file is refused whole, the old table stays", "err", err)
	}
}

const reloadUsage = `Usage: lw4o6-aftr reload --pid PID [--bindings FILE]
       lw4o6-aftr reload --pid-file FILE [--bindings FILE]

Asks the running daemon to re-read its --bindings file (a Snabb
softwire-config) by sending it SIGHUP, as kill -HUP PID or systemd's
ExecReload do. The daemon adds the new static bindings, removes those gone
from the file and replaces changed ones, leaving PCP bindings alone, and logs
what changed; a file it cannot use whole (a syntax error, two softwires on
one port set, one on a port set a PCP binding holds) is refused with its
file:line and the old table stays. Interface settings (addresses, MTU) need a
restart: the daemon logs which.

With --bindings, the file is checked here first (syntax, softwires against
each other; not against the daemon's PCP bindings) and nothing is sent when
it is bad, so that the error shows where the command runs.

Flags:
`

// runReload is `lw4o6-aftr reload`.
func runReload(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("lw4o6-aftr reload", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, reloadUsage); fs.PrintDefaults() }
	pid := fs.Int("pid", 0, "process `ID` of the lw4o6-aftr daemon")
	pidFile := fs.String("pid-file", "", "`FILE` holding the daemon's process ID (e.g. written by the service manager)")
	bindings := fs.String("bindings", "", "check this softwire-config `FILE` before signalling (the daemon reads its own --bindings)")
	version := cli.VersionFlag(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "lw4o6-aftr reload: %v (see --help)\n", err)
		return 2
	}
	if *version {
		return cli.PrintVersion(stdout, "lw4o6-aftr reload")
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lw4o6-aftr reload: unexpected argument %q (see --help)\n", fs.Arg(0))
		return 2
	}
	target, err := reloadTarget(*pid, *pidFile)
	if err != nil {
		fmt.Fprintf(stderr, "lw4o6-aftr reload: %v\n", err)
		return 2
	}
	if *bindings != "" {
		cfg := aftr.DefaultConfig()
		if err := aftr.LoadSnabb(*bindings, &cfg); err != nil {
			fmt.Fprintf(stderr, "lw4o6-aftr reload: not sent: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: %d static bindings\n", *bindings, len(cfg.StaticBindings()))
	}
	if err := signalReload(target); err != nil {
		fmt.Fprintf(stderr, "lw4o6-aftr reload: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "sent SIGHUP to %d: the daemon's log says what changed\n", target)
	return 0
}

// reloadTarget is the daemon's process ID, from --pid or --pid-file.
func reloadTarget(pid int, pidFile string) (int, error) {
	switch {
	case pid != 0 && pidFile != "":
		return 0, errors.New("--pid and --pid-file: give one")
	case pidFile != "":
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return 0, fmt.Errorf("--pid-file: %w", err)
		}
		if pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
			return 0, fmt.Errorf("--pid-file %s: want a process ID, found %q", pidFile, strings.TrimSpace(string(b)))
		}
	case pid == 0:
		return 0, errors.New("--pid PID or --pid-file FILE is required (see --help)")
	}
	if pid <= 1 {
		return 0, fmt.Errorf("process ID %d: want the daemon's (greater than 1)", pid)
	}
	return pid, nil
}
