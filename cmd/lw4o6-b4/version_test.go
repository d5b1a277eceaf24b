package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"--version"}, &out, &errOut)
	s := out.String()
	if code != 0 || !strings.HasPrefix(s, "lw4o6-b4 ") || !strings.Contains(s, "github.com/lw4o6/lw4o6") ||
		!strings.Contains(s, runtime.Version()) || errOut.Len() != 0 {
		t.Errorf("exit %d, stdout %q, stderr %q", code, s, errOut.String())
	}
}
