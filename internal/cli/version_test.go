package cli

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFormatVersion(t *testing.T) {
	plat := runtime.GOOS + "/" + runtime.GOARCH
	for _, c := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{"tagged, clean", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/lw4o6/lw4o6", Version: "v1.2.3"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "8beaf3a"}, {Key: "vcs.time", Value: "2026-12-03T11:58:00Z"}, {Key: "vcs.modified", Value: "false"}}},
			true, "lw4o6-aftr v1.2.3 (github.com/lw4o6/lw4o6, revision 8beaf3a, 2026-12-03T11:58:00Z) go1.26.0 " + plat},
		{"checkout, modified", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/lw4o6/lw4o6", Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "8beaf3a"}, {Key: "vcs.modified", Value: "true"}}},
			true, "lw4o6-aftr (devel) (github.com/lw4o6/lw4o6, revision 8beaf3a, modified) go1.26.0 " + plat},
		{"no VCS", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/lw4o6/lw4o6"}},
			true, "lw4o6-aftr (devel) (github.com/lw4o6/lw4o6) go1.26.0 " + plat},
		{"no build info", nil, false, "lw4o6-aftr unknown (no build information) " + runtime.Version() + " " + plat},
	} {
		if got := formatVersion("lw4o6-aftr", c.bi, c.ok); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

// Daemon answers --version (ErrVersion from its parser) on stdout, exit 0,
// without serving.
func TestDaemonVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	code := Daemon("lw4o6-x", []string{"--version"}, &out, &errOut,
		func([]string, io.Writer) (int, slog.Level, error) { return 0, 0, ErrVersion },
		func(context.Context, int, io.Writer, *slog.Logger) error { t.Fatal("served"); return nil })
	if code != 0 || !strings.HasPrefix(out.String(), "lw4o6-x ") || !strings.Contains(out.String(), runtime.Version()) || errOut.Len() != 0 {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}
