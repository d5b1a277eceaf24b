package lab

import (
	"encoding/binary"
	"sync/atomic"
	"time"
)

// RateMeter counts events in fixed windows from a start time: the peak of
// a request rate. Its windows are a fixed array (bounded); events before
// the start or past the last window are counted apart.
type RateMeter struct {
	start   time.Time
	window  time.Duration
	buckets []atomic.Uint64
	// Early and Late count events before the start and past the last
	// window.
	Early, Late atomic.Uint64
}

// NewRateMeter counts events in windows of window from start, for span.
func NewRateMeter(start time.Time, window, span time.Duration) *RateMeter {
	n := int(span/window) + 1
	return &RateMeter{start: start, window: window, buckets: make([]atomic.Uint64, n)}
}

// Add counts one event at t.
func (m *RateMeter) Add(t time.Time) {
	d := t.Sub(m.start)
	switch i := int(d / m.window); {
	case d < 0:
		m.Early.Add(1)
	case i >= len(m.buckets):
		m.Late.Add(1)
	default:
		m.buckets[i].Add(1)
	}
}

// Peak is the largest count in one window and the start of that window
// (from the meter's start).
func (m *RateMeter) Peak() (uint64, time.Duration) {
	var peak uint64
	var at time.Duration
	for i := range m.buckets {
		if c := m.buckets[i].Load(); c > peak {
			peak, at = c, time.Duration(i)*m.window
		}
	}
	return peak, at
}

// Total is the number of events counted in the windows.
func (m *RateMeter) Total() uint64 {
	var t uint64
	for i := range m.buckets {
		t += m.buckets[i].Load()
	}
	return t
}

// isPCPRequest reports whether an access-network packet is a PCP request
// to the AFTR: IPv4-in-IPv6 (next header 4, no extension header) carrying
// UDP to 192.0.0.1 port 5351 (PROTOCOL.md §8 item 1).
func isPCPRequest(b []byte) bool {
	const v6 = 40
	if len(b) < v6+20 || b[0]>>4 != 6 || b[6] != 4 {
		return false
	}
	in := b[v6:]
	ihl := int(in[0]&0xf) * 4
	if in[0]>>4 != 4 || ihl < 20 || len(in) < ihl+4 || in[9] != 17 ||
		[4]byte(in[16:20]) != [4]byte{192, 0, 0, 1} || binary.BigEndian.Uint16(in[6:])&0x1fff != 0 {
		return false
	}
	return binary.BigEndian.Uint16(in[ihl+2:]) == 5351
}
