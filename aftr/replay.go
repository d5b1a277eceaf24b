package aftr

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lw4o6/lw4o6/stack/pcap"
)

// Replay: the AFTR's own data plane run offline over captures, for
// `lw4o6-aftr check` (an operator replaying a capture against a
// configuration) and for the conformance test, which goes through the same
// function.

// Profiles names the sets of knobs ApplyProfile knows.
var Profiles = []string{"rfc", "snabb"}

// ApplyProfile applies a named profile: "rfc" (or "") keeps the RFC-sound
// defaults, "snabb" is SnabbProfile.
func ApplyProfile(c *Config, name string) error {
	switch name {
	case "", "rfc":
		return nil
	case "snabb":
		SnabbProfile(c)
		return nil
	}
	return fmt.Errorf("%w: unknown profile %q (want %s)", ErrConfig, name, strings.Join(Profiles, " or "))
}

// Replay builds an AFTR from cfg and runs it over two LINKTYPE_RAW
// captures: every packet of in4 enters its Internet (IPv4) side, in file
// order, then every packet of in6 its access (IPv6) side, in file order.
// What each side emits is written to out4 and out6 as LINKTYPE_RAW
// captures, stamped with the time of the packet that caused it; a side
// that emits nothing gets an empty capture. A nil in* is no input.
//
// The AFTR's clock is the captures' own: it starts at the first packet's
// timestamp and follows the timestamps, never going back (the IPv6 capture
// may begin before the IPv4 one ends), so reassembly timeouts and ICMP rate
// limits act as they would have on the wire. cfg.Now is replaced. Nothing
// is sent on any network. The AFTR is returned for its counters.
func Replay(cfg Config, in4, in6 io.Reader, out4, out6 io.Writer) (*AFTR, error) {
	w4, err := pcap.NewWriter(out4)
	if err != nil {
		return nil, fmt.Errorf("IPv4-side output: %w", err)
	}
	w6, err := pcap.NewWriter(out6)
	if err != nil {
		return nil, fmt.Errorf("IPv6-side output: %w", err)
	}
	clk := &replayClock{}
	cfg.Now = clk.Now
	l4 := &pcapLink{w: w4, clk: clk}
	l6 := &pcapLink{w: w6, clk: clk}
	a, err := New(cfg, l6, l4)
	if err != nil {
		return nil, err
	}
	for _, in := range []struct {
		r    io.Reader
		side string
		fn   func([]byte)
	}{{in4, "IPv4-side input", a.FromInternet}, {in6, "IPv6-side input", a.FromAccess}} {
		if in.r == nil {
			continue
		}
		pr, err := pcap.NewReader(in.r)
		if err != nil {
			return a, fmt.Errorf("%s: %w", in.side, err)
		}
		for n := 1; ; n++ {
			pkt, ts, err := pr.ReadPacket()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return a, fmt.Errorf("%s: packet %d: %w", in.side, n, err)
			}
			clk.advance(ts)
			in.fn(pkt)
		}
	}
	for _, l := range []*pcapLink{l4, l6} {
		if l.err != nil {
			return a, l.err
		}
	}
	if err := w4.Flush(); err != nil {
		return a, fmt.Errorf("IPv4-side output: %w", err)
	}
	if err := w6.Flush(); err != nil {
		return a, fmt.Errorf("IPv6-side output: %w", err)
	}
	return a, nil
}

// replayClock is the capture's time: it only moves forward.
type replayClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *replayClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *replayClock) advance(t time.Time) {
	c.mu.Lock()
	if t.After(c.t) {
		c.t = t
	}
	c.mu.Unlock()
}

// pcapLink records what one side sends.
type pcapLink struct {
	w   *pcap.Writer
	clk *replayClock
	err error
}

func (l *pcapLink) Send(pkt []byte) {
	if err := l.w.WritePacketAt(l.clk.Now(), pkt); err != nil && l.err == nil {
		l.err = err
	}
}

// WriteCounters prints a's non-zero counters, one "name value" line each,
// sorted by name.
func WriteCounters(w io.Writer, a *AFTR) error {
	m := a.Counters()
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, err := fmt.Fprintf(w, "%s %d\n", k, m[k]); err != nil {
			return err
		}
	}
	return nil
}
