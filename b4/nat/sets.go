package nat

import (
	"fmt"
	"net/netip"

	"github.com/lw4o6/lw4o6/stack/portset"
)

// Several port sets (docs/port-sets.md): the B4 may hold more than the
// set SetExternal installs, all on the same public address. The NAT draws
// from every one, the first set first, and counts the mappings of each so
// that the B4 can see which sets are idle and give them back.

// MaxSets bounds the sets one table holds.
const MaxSets = 16

// natSet is one port set and the mappings on its ports, per protocol.
type natSet struct {
	ports portset.Set
	n     int
	used  [nProto]int
}

// SetUsage is one set in Stats: its ports and the mappings on them of the
// fullest protocol.
type SetUsage struct {
	Ports portset.Set
	Used  int
}

// AddSet adds a port set on the current public address: new mappings may
// take its ports once the earlier sets are full. Adding a set already held
// changes nothing. It fails (ErrInvalid) for another address — the NAT has
// one public address (RFC 7596 §5.1), and a set elsewhere is refused rather
// than half supported — for a set overlapping one held, and past MaxSets;
// ErrNoExternal before SetExternal.
func (t *Table) AddSet(addr netip.Addr, ports portset.Set) error {
	addr = addr.Unmap()
	if !addr.Is4() {
		return fmt.Errorf("%w: external address %v is not IPv4", ErrInvalid, addr)
	}
	if ports == nil || ports.Len() == 0 {
		return fmt.Errorf("%w: empty port set", ErrInvalid)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.provisioned {
		return ErrNoExternal
	}
	if a := addr4(addr); a != t.ext {
		return fmt.Errorf("%w: set %v on %v, but the NAT's address is %v: one address per B4",
			ErrInvalid, ports, addr, netip.AddrFrom4(be4(t.ext)))
	}
	for i := range t.sets {
		if samePorts(t.sets[i].ports, ports) {
			return nil
		}
	}
	if len(t.sets) >= MaxSets {
		return fmt.Errorf("%w: already %d port sets", ErrInvalid, len(t.sets))
	}
	for i := range ports.Len() {
		if p := ports.Nth(i); t.contains(p) {
			return fmt.Errorf("%w: set %v overlaps a held set at port %d", ErrInvalid, ports, p)
		}
	}
	t.sets = append(t.sets, natSet{ports: ports, n: ports.Len()})
	t.nports += ports.Len()
	return nil
}

// RemoveSet gives back a set AddSet added: the mappings on its ports, and
// their sessions, are flushed and no others (RFC 7596 §5.1). It reports
// whether the set was held. The first set is not removed this way
// (ErrInvalid): SetExternal and Clear replace it.
func (t *Table) RemoveSet(ports portset.Set) (bool, error) {
	if ports == nil {
		return false, fmt.Errorf("%w: nil port set", ErrInvalid)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.sets {
		if !samePorts(t.sets[i].ports, ports) {
			continue
		}
		if i == 0 {
			return false, fmt.Errorf("%w: %v is the first set", ErrInvalid, ports)
		}
		for pi := range nProto {
			for ext, m := range t.byExt[pi] {
				if ports.Contains(ext) {
					t.removeMapping(m)
				}
			}
		}
		t.nports -= t.sets[i].n
		t.sets = append(t.sets[:i], t.sets[i+1:]...)
		return true, nil
	}
	return false, nil
}

// contains reports whether p is in one of the sets (under t.mu).
func (t *Table) contains(p uint16) bool {
	for i := range t.sets {
		if t.sets[i].ports.Contains(p) {
			return true
		}
	}
	return false
}

// used counts a mapping on ext in or out of its set's use (under t.mu).
func (t *Table) used(ext uint16, pi, d int) {
	for i := range t.sets {
		if t.sets[i].ports.Contains(ext) {
			t.sets[i].used[pi] += d
			return
		}
	}
}

// setStats fills the port-pool part of s (under t.mu).
func (t *Table) setStats(s *Stats) {
	s.Ports = t.nports
	s.PortsUsed = max(t.nmap[iTCP], t.nmap[iUDP], t.nmap[iICMP])
	s.AllocFailures = t.c.allocFail.Load()
	s.Sets = make([]SetUsage, len(t.sets))
	for i, x := range t.sets {
		s.Sets[i] = SetUsage{Ports: x.ports, Used: max(x.used[iTCP], x.used[iUDP], x.used[iICMP])}
	}
}

// Holds reports whether port p is in one of the sets the table holds.
func (t *Table) Holds(p uint16) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.provisioned && t.contains(p)
}
