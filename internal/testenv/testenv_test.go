package testenv

import (
	"testing"
)

// fakeT records how a test ended.
type fakeT struct {
	testing.TB
	skipped, failed bool
}

func (f *fakeT) Helper()               {}
func (f *fakeT) Skip(...any)           { f.skipped = true }
func (f *fakeT) Fatalf(string, ...any) { f.failed = true }
func (f *fakeT) Skipf(string, ...any)  { f.skipped = true }
func (f *fakeT) Errorf(string, ...any) { f.failed = true }
func (f *fakeT) Logf(string, ...any)   {}
func (f *fakeT) Cleanup(func())        {}
func (f *fakeT) Name() string          { return "fake" }
func (f *fakeT) Setenv(k, v string)    {}
func (f *fakeT) TempDir() string       { return "" }
func (f *fakeT) Failed() bool          { return f.failed }
func (f *fakeT) Skipped() bool         { return f.skipped }

func TestMissingSkipsOutsideCIAndFailsUnderCI(t *testing.T) {
	t.Setenv("CI", "")
	f := &fakeT{}
	Missing(f, "tool %s", "x")
	if !f.skipped || f.failed {
		t.Errorf("outside CI: skipped %v failed %v, want a skip", f.skipped, f.failed)
	}
	t.Setenv("CI", "true")
	f = &fakeT{}
	Missing(f, "tool %s", "x")
	if !f.failed || f.skipped {
		t.Errorf("under CI: skipped %v failed %v, want a failure", f.skipped, f.failed)
	}
	f = &fakeT{}
	LookPath(f, "no-such-tool-lw4o6")
	if !f.failed {
		t.Error("LookPath of a missing tool under CI did not fail")
	}
	f = &fakeT{}
	RequireFile(f, "/no/such/file/lw4o6", "a file")
	if !f.failed {
		t.Error("RequireFile of a missing file under CI did not fail")
	}
}
