// Package counter keeps named packet and byte counters for the twins' drop
// reasons and traffic, in Snabb lwAFTR's naming scheme
// ({in,out,drop,hairpin}-<reason>-<proto>-{bytes,packets}): lock-free to
// bump from the hot path, readable as a sorted snapshot.
package counter

import (
	"fmt"
	"io"
	"sort"
	"sync/atomic"
)

// ID names one counter pair (packets and bytes) of a Set.
type ID int

// Set is a fixed set of counter pairs.
type Set struct {
	names   []string
	packets []atomic.Uint64
	bytes   []atomic.Uint64
}

// NewSet makes one packets/bytes pair per name; ID i is names[i].
func NewSet(names ...string) *Set {
	return &Set{names: names, packets: make([]atomic.Uint64, len(names)), bytes: make([]atomic.Uint64, len(names))}
}

// Count adds one packet of n octets to counter id.
func (s *Set) Count(id ID, n int) {
	s.packets[id].Add(1)
	s.bytes[id].Add(uint64(n))
}

// Packets is counter id's packet count.
func (s *Set) Packets(id ID) uint64 { return s.packets[id].Load() }

// Bytes is counter id's octet count.
func (s *Set) Bytes(id ID) uint64 { return s.bytes[id].Load() }

// Snapshot returns every non-zero counter as name-packets and name-bytes.
func (s *Set) Snapshot() map[string]uint64 {
	m := make(map[string]uint64)
	for i, n := range s.names {
		if p := s.packets[i].Load(); p != 0 {
			m[n+"-packets"] = p
			m[n+"-bytes"] = s.bytes[i].Load()
		}
	}
	return m
}

// WriteTo prints the non-zero counters, one "name value" line each, sorted.
func (s *Set) WriteTo(w io.Writer) (int64, error) {
	m := s.Snapshot()
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var total int64
	for _, k := range keys {
		n, err := fmt.Fprintf(w, "%s %d\n", k, m[k])
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
