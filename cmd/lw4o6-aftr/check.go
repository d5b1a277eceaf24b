package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lw4o6/lw4o6/aftr"
	"github.com/lw4o6/lw4o6/internal/cli"
	"github.com/spf13/pflag"
)

const checkUsage = `Usage: lw4o6-aftr check --conf FILE [--in4 A.pcap] [--in6 B.pcap] --out4 X.pcap --out6 Y.pcap

Replays captures against a configuration, offline: the AFTR's own data plane
(the same code as the daemon) reads every packet of --in4 on its IPv4
(Internet) side, in file order, then every packet of --in6 on its IPv6
(access) side, in file order, and writes what each side emits to --out4 and
--out6 as LINKTYPE_RAW pcaps (an empty capture when a side emits nothing).
Nothing is sent on any network. Use it to see what the AFTR does with a
capture, to debug a binding table, or to compare with another lwAFTR.

Captures are LINKTYPE_RAW (101): one IP datagram per record, no link
header. --conf is a Snabb lwAFTR softwire-config, read as is. The AFTR's
clock follows the capture timestamps.

Example:
  lw4o6-aftr check --conf lwaftr.conf --in4 from-internet.pcap \
      --in6 from-b4s.pcap --out4 to-internet.pcap --out6 to-b4s.pcap --counters

Flags:
`

// runCheck is `lw4o6-aftr check`: a thin flag wrapper around aftr.Replay.
func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("lw4o6-aftr check", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, checkUsage); fs.PrintDefaults() }
	conf := fs.String("conf", "", "Snabb softwire-config `FILE`: binding table and both interfaces (required)")
	in4 := fs.String("in4", "", "`PCAP` fed to the IPv4 (Internet) side; omitted: no IPv4 input")
	in6 := fs.String("in6", "", "`PCAP` fed to the IPv6 (access) side; omitted: no IPv6 input")
	out4 := fs.String("out4", "", "`PCAP` to write what the IPv4 side emits (required)")
	out6 := fs.String("out6", "", "`PCAP` to write what the IPv6 side emits (required)")
	profile := fs.String("profile", "rfc", "knob `SET`: rfc (our RFC-sound defaults) or snabb (emit what Snabb lwAFTR emits: hop limit 255, Snabb's TTL and ICMP choices, fragment IDs from 0x4243)")
	counters := fs.Bool("counters", false, "print the non-zero counters to stdout afterwards")
	version := cli.VersionFlag(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "lw4o6-aftr check: %v (see --help)\n", err)
		return 2
	}
	if *version {
		return cli.PrintVersion(stdout, "lw4o6-aftr check")
	}
	if err := check(*conf, *in4, *in6, *out4, *out6, *profile, *counters, fs.Args(), stdout); err != nil {
		fmt.Fprintf(stderr, "lw4o6-aftr check: %v\n", err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")

func check(conf, in4, in6, out4, out6, profile string, counters bool, rest []string, stdout io.Writer) error {
	switch {
	case len(rest) > 0:
		return fmt.Errorf("%w: unexpected argument %q", errUsage, rest[0])
	case conf == "":
		return fmt.Errorf("%w: --conf is required", errUsage)
	case out4 == "" || out6 == "":
		return fmt.Errorf("%w: --out4 and --out6 are required", errUsage)
	}
	cfg := aftr.DefaultConfig()
	if err := aftr.ApplyProfile(&cfg, profile); err != nil {
		return fmt.Errorf("%w: --profile %q: want %s", errUsage, profile, strings.Join(aftr.Profiles, " or "))
	}
	if err := aftr.LoadSnabb(conf, &cfg); err != nil {
		return err
	}
	var ins [2]io.Reader
	for i, p := range []string{in4, in6} {
		if p == "" {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		ins[i] = f
	}
	o4, err := os.Create(out4)
	if err != nil {
		return err
	}
	defer o4.Close()
	o6, err := os.Create(out6)
	if err != nil {
		return err
	}
	defer o6.Close()
	a, err := aftr.Replay(cfg, ins[0], ins[1], o4, o6)
	if err != nil {
		return err
	}
	if err := o4.Close(); err != nil {
		return err
	}
	if err := o6.Close(); err != nil {
		return err
	}
	if counters {
		return aftr.WriteCounters(stdout, a)
	}
	return nil
}
