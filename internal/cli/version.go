package cli

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/pflag"
)

// ErrVersion is returned by a daemon's flag parser when --version was
// asked for: Daemon prints the version and exits 0.
var ErrVersion = errors.New("version")

// VersionFlag adds --version to fs.
func VersionFlag(fs *pflag.FlagSet) *bool {
	return fs.Bool("version", false, "print the version (module, VCS revision, Go) and exit")
}

// PrintVersion writes Version(name) and a newline to w and returns 0, the
// exit status of `CMD --version`.
func PrintVersion(w io.Writer, name string) int {
	fmt.Fprintln(w, Version(name))
	return 0
}

// Version is the one-line version of the running binary, from the build
// information the Go toolchain embeds:
//
//	lw4o6-aftr v1.2.3 (github.com/lw4o6/lw4o6, revision 8beaf3a…, 2026-12-03T11:58:00Z, modified) go1.26.0 linux/amd64
//
// "(devel)" is a binary built from a checkout rather than a tagged module
// (go install …@v1.2.3 gives the tag); the revision, its time and
// "modified" (uncommitted changes) appear when the build recorded them
// (go build in a git checkout, -buildvcs=auto).
func Version(name string) string {
	bi, ok := debug.ReadBuildInfo()
	return formatVersion(name, bi, ok)
}

func formatVersion(name string, bi *debug.BuildInfo, ok bool) string {
	goVersion := runtime.Version()
	if !ok || bi == nil {
		return fmt.Sprintf("%s unknown (no build information) %s %s/%s", name, goVersion, runtime.GOOS, runtime.GOARCH)
	}
	if bi.GoVersion != "" {
		goVersion = bi.GoVersion
	}
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	details := []string{}
	if bi.Main.Path != "" {
		details = append(details, bi.Main.Path)
	}
	var rev, at string
	var modified bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev != "" {
		details = append(details, "revision "+rev)
	}
	if at != "" {
		details = append(details, at)
	}
	if modified {
		details = append(details, "modified")
	}
	out := name + " " + version
	if len(details) > 0 {
		out += " (" + strings.Join(details, ", ") + ")"
	}
	return fmt.Sprintf("%s %s %s/%s", out, goVersion, runtime.GOOS, runtime.GOARCH)
}
