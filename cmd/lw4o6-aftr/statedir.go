package main

import (
	"os"
	"path/filepath"
	"strings"
)

// defaultStateDir is where the binding journal lives unless --state-dir
// says otherwise: the directory systemd made for the unit
// (StateDirectory=, given as $STATE_DIRECTORY), else the XDG state
// directory, else ~/.local/state; "" when none can be found (no journal).
func defaultStateDir() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		// systemd lists one path per StateDirectory= entry, colon-separated.
		return strings.SplitN(d, ":", 2)[0]
	}
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "lw4o6-aftr")
	}
	if h, err := os.UserHomeDir(); err == nil && filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "state", "lw4o6-aftr")
	}
	return ""
}
