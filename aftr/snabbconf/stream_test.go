package snabbconf

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/lw4o6/lw4o6/stack/cfgfile"
)

// Stream hands over, in file order, exactly the softwires Parse keeps, and
// the rest of the configuration is the same.
func TestStreamMatchesParse(t *testing.T) {
	src := bindingTable(3*64 + 5)
	want, err := Parse(bytes.NewReader(src), "bt.conf")
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]io.Reader{
		"whole":    bytes.NewReader(src),
		"one byte": iotest.OneByteReader(bytes.NewReader(src)),
		"halves":   iotest.HalfReader(bytes.NewReader(src)),
	} {
		t.Run(name, func(t *testing.T) {
			var got []Softwire
			c, err := Stream(r, "bt.conf", func(s Softwire) error {
				got = append(got, s)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want.Softwires) {
				t.Errorf("streamed %d softwires, parsed %d, or they differ", len(got), len(want.Softwires))
			}
			if c.Softwires != nil {
				t.Errorf("Stream kept %d softwires", len(c.Softwires))
			}
			c.Softwires = want.Softwires
			if !reflect.DeepEqual(c, want) {
				t.Errorf("config\n%+v\nwant\n%+v", c, want)
			}
		})
	}
}

// The file is parsed whole before it is checked against the schema: a
// syntax error anywhere is reported before a schema error, or an error of
// the softwire consumer, earlier in the file.
func TestStreamSyntaxErrorsFirst(t *testing.T) {
	l := append([]string(nil), base[1:]...)
	l[13] = "    mtu 1;"    // line 14: out of range (schema)
	l[22] = "      id 0 0;" // line 23: missing ';' (syntax)
	in := strings.Join(l, "\n") + "\n"
	_, err := Parse(strings.NewReader(in), "cfg.conf")
	var e *Error
	if !errors.As(err, &e) || e.Line != 23 || !errors.Is(err, ErrSyntax) {
		t.Fatalf("Parse = %v, want the syntax error of line 23", err)
	}
	stop := errors.New("consumer refuses")
	_, err = Stream(strings.NewReader(in), "cfg.conf", func(Softwire) error { return stop })
	if !errors.As(err, &e) || e.Line != 23 {
		t.Fatalf("Stream = %v, want the syntax error of line 23", err)
	}
	// Without it, the first schema error, and the consumer's before a
	// later schema error.
	l[22] = base[23]
	in = strings.Join(l, "\n") + "\n"
	if _, err = Parse(strings.NewReader(in), "cfg.conf"); !errors.As(err, &e) || e.Line != 14 || !errors.Is(err, ErrValue) {
		t.Fatalf("Parse = %v, want the bad value of line 14", err)
	}
	if _, err = Stream(strings.NewReader(in), "cfg.conf", func(Softwire) error { return stop }); err != stop {
		t.Fatalf("Stream = %v, want the consumer's error", err)
	}
}

// Reads are bounded: an endless input (`--bindings /dev/zero`, a pipe)
// is an error once past the bound, not a process that grows without end.
func TestStreamBounded(t *testing.T) {
	defer func(m int64) { maxInput = m }(maxInput)
	maxInput = 1 << 20
	for name, r := range map[string]io.Reader{
		"spaces":  endless(' '),
		"comment": io.MultiReader(strings.NewReader("/*"), endless('x')),
		"keyword": endless('x'),
		"string":  io.MultiReader(strings.NewReader(`softwire-config { name "`), endless('x')),
		"zeros":   endless(0),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Stream(r, "endless", nil)
			if err == nil {
				t.Fatal("no error")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%v is not an *Error", err)
			}
			if !errors.Is(err, ErrTooLarge) && !strings.Contains(err.Error(), "longer than") {
				t.Errorf("%v, want the input or the token too large", err)
			}
		})
	}
	if !errors.Is(ErrTooLarge, cfgfile.ErrTooLarge) {
		t.Error("ErrTooLarge does not wrap cfgfile.ErrTooLarge")
	}
}

type endless byte

func (e endless) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(e)
	}
	return len(b), nil
}

// A read error is returned as such, not as the syntax error that the
// input cut short would look like.
func TestStreamReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	r := io.MultiReader(strings.NewReader("softwire-config {\n  name \"x"), iotest.ErrReader(boom))
	if _, err := Parse(r, "r.conf"); !errors.Is(err, boom) {
		t.Errorf("Parse = %v, want the read error", err)
	}
}

// StreamFile refuses what is not a regular file, as cfgfile.ReadFile does.
func TestStreamFileRefusesNonRegular(t *testing.T) {
	for _, p := range []string{"/dev/zero", t.TempDir()} {
		if _, err := StreamFile(p, nil); !errors.Is(err, cfgfile.ErrNotRegular) {
			t.Errorf("StreamFile(%s) = %v, want ErrNotRegular", p, err)
		}
	}
	p := filepath.Join(t.TempDir(), "ok.conf")
	if err := os.WriteFile(p, bindingTable(3), 0o644); err != nil {
		t.Fatal(err)
	}
	n := 0
	if _, err := StreamFile(p, func(Softwire) error { n++; return nil }); err != nil || n != 3 {
		t.Errorf("StreamFile = %v with %d softwires, want 3", err, n)
	}
}

// A streamed table of any size costs no allocation per softwire beyond
// the checks' maps.
func TestStreamAllocations(t *testing.T) {
	small, big := bindingTable(64), bindingTable(64*64)
	count := func(src []byte) float64 {
		return testing.AllocsPerRun(3, func() {
			if _, err := Stream(bytes.NewReader(src), "bt.conf", func(Softwire) error { return nil }); err != nil {
				t.Fatal(err)
			}
		})
	}
	a, b := count(small), count(big)
	if per := (b - a) / (64*64 - 64); per > 0.1 {
		t.Errorf("%.2f allocations per softwire (%v for 64, %v for 4096)", per, a, b)
	}
}
