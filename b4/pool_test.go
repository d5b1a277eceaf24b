package b4

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/pcp"
	"github.com/lw4o6/lw4o6/stack/portset"
)

// setsHandler is a fake AFTR policy for several sets per B4
// (docs/port-sets.md): set n (Internal Port; 1 is 0) gets 64 ports at
// 4096+64·n on testPublic, at most max sets, USER_EX_QUOTA past that.
type setsHandler struct {
	mu        sync.Mutex
	max       int
	elsewhere uint16 // a set number granted on another address (0xffff: none)
	sets      map[uint16]bool
	asked     []uint16 // set numbers of the requests with a lifetime
	deleted   []uint16
}

var otherPublic = netip.MustParseAddr("203.0.113.99")

func (h *setsHandler) Map(r *pcp.Request) pcp.Response {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := r.Message.Map.InternalPort
	if n == 1 {
		n = 0
	}
	if r.Message.Lifetime == 0 {
		delete(h.sets, n)
		h.deleted = append(h.deleted, n)
		return pcp.Response{Result: pcp.Success}
	}
	h.asked = append(h.asked, n)
	if !h.sets[n] && len(h.sets) >= h.max {
		return pcp.Response{Result: pcp.UserExQuota, Lifetime: pcp.ShortErrorLifetime}
	}
	h.sets[n] = true
	first := 4096 + 64*n
	ip := testPublic
	if n == h.elsewhere {
		ip = otherPublic
	}
	return pcp.Response{Lifetime: 3600, ExternalIP: ip, ExternalPort: first,
		PortSet: &pcp.PortSet{Size: 64, FirstInternalPort: first}}
}

func (h *setsHandler) snapshot() (asked, deleted []uint16, live int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]uint16(nil), h.asked...), append([]uint16(nil), h.deleted...), len(h.sets)
}

// poolEnv is a B4 on a shifted clock (so that NAT timeouts can pass at
// once) in front of a setsHandler.
type poolEnv struct {
	*env
	sh    *setsHandler
	shift atomic.Int64
	next  uint16 // next LAN source port
}

func newPoolEnv(t *testing.T, aftrMax int, mod func(*Config)) *poolEnv {
	t.Helper()
	old := natExpireEvery
	natExpireEvery = 20 * time.Millisecond
	t.Cleanup(func() { natExpireEvery = old }) // after the env's: Run has returned
	p := &poolEnv{sh: &setsHandler{max: aftrMax, elsewhere: 0xffff, sets: map[uint16]bool{}}, next: 10000}
	p.env = newEnv(t, newHandler(3600), func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(p.shift.Load())) }
		c.MaxSets, c.GrowAt, c.ShrinkAfter = 4, 0.8, 300*time.Millisecond
		c.NAT.HostPortShare = 0 // one LAN host fills the pool here (quota_test.go)
		if mod != nil {
			mod(c)
		}
	})
	// The server shares the B4's shifted clock, so a jump is no Epoch
	// failure (RFC 6887 §8.5).
	p.aftr.srv = pcp.NewServer(pcp.ServerConfig{Handler: p.sh, Now: func() time.Time { return time.Now().Add(time.Duration(p.shift.Load())) }})
	// Drain the softwire so that flows never fill the test channels.
	go func() {
		for {
			select {
			case <-p.aftr.data:
			case <-p.aftr.reqs:
			case <-p.aftr.stop:
				return
			}
		}
	}()
	p.run()
	waitStatus(t, p.b, 5*time.Second, "provisioned", func(s Status) bool { return s.Provisioned })
	return p
}

// flows opens n new UDP flows from the LAN host, one packet each.
func (p *poolEnv) flows(n int) {
	for range n {
		// The fake AFTR drops what its channels cannot take: pace.
		for len(p.aftr.in) > 8 || len(p.aftr.data) > 32 {
			time.Sleep(time.Millisecond)
		}
		p.b.FromLAN(udp4(netip.AddrPortFrom(testHost, p.next), netip.AddrPortFrom(testRemote, 53), 0, 64, []byte("x")))
		p.next++
	}
}

func setsOf(s Status) []portset.Range {
	var out []portset.Range
	for _, x := range s.Sets {
		out = append(out, x.Ports)
	}
	return out
}

// docs/port-sets.md: past GrowAt of the ports held the B4 asks for set 2,
// then set 3, each on its address, and the NAT uses them instead of
// dropping flows; at its own MaxSets it asks no more and counts the excess
// as PortsExhausted; when the flows idle out the added sets are given back
// (MAP lifetime 0) and the first stays.
func TestPoolGrowsAndShrinks(t *testing.T) {
	p := newPoolEnv(t, 8, func(c *Config) { c.MaxSets = 3 })
	if s := p.b.Status(); len(s.Sets) != 1 || s.Sets[0].Ports != (portset.Range{First: 4096, Size: 64}) {
		t.Fatalf("first set: %+v", s.Sets)
	}
	p.flows(52) // 81 % of 64
	s := waitStatus(t, p.b, 5*time.Second, "a second set", func(s Status) bool { return len(s.Sets) == 2 })
	if x := s.Sets[1]; x.Number != 2 || x.IPv4 != testPublic || x.Ports != (portset.Range{First: 4096 + 128, Size: 64}) {
		t.Errorf("second set %+v", x)
	}
	p.flows(52) // 104 of 128
	waitStatus(t, p.b, 5*time.Second, "a third set", func(s Status) bool { return len(s.Sets) == 3 })
	p.flows(100) // 204 flows on 192 ports: 12 over
	waitFor(t, 5*time.Second, "12 flows dropped", func() bool { return p.b.Status().NAT.DropOut.PortsExhausted == 12 })
	s = p.b.Status()
	if s.NAT.Ports != 192 || s.NAT.PortsUsed != 192 || len(s.Sets) != 3 {
		t.Errorf("at the cap: ports %d used %d sets %v", s.NAT.Ports, s.NAT.PortsUsed, setsOf(s))
	}
	for _, x := range s.Sets {
		if x.Used != 64 {
			t.Errorf("set %d used %d, want 64", x.Number, x.Used)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if asked, _, _ := p.sh.snapshot(); len(asked) != 3 {
		t.Errorf("requests %v: want the first set and two more, none past MaxSets", asked)
	}
	if got := pkts(p.b, "pool-grow"); got != 2 {
		t.Errorf("pool-grow %d, want 2", got)
	}

	// The flows idle out (RFC 4787 REQ-5: 2 min at least; the clock jumps).
	p.shift.Add(int64(6 * time.Minute))
	s = waitStatus(t, p.b, 10*time.Second, "added sets given back", func(s Status) bool { return len(s.Sets) == 1 })
	if s.Sets[0].Ports != (portset.Range{First: 4096, Size: 64}) || s.NAT.Ports != 64 {
		t.Errorf("after shrinking: %v, %d ports", setsOf(s), s.NAT.Ports)
	}
	waitFor(t, 5*time.Second, "two deletes at the AFTR", func() bool { _, d, live := p.sh.snapshot(); return len(d) == 2 && live == 1 })
	if got := pkts(p.b, "pool-shrink"); got != 2 {
		t.Errorf("pool-shrink %d, want 2", got)
	}
	// The pool grows again when needed, reusing the lowest set number.
	p.flows(60)
	s = waitStatus(t, p.b, 5*time.Second, "growth again", func(s Status) bool { return len(s.Sets) == 2 })
	if s.Sets[1].Number != 2 {
		t.Errorf("regrown set number %d, want 2", s.Sets[1].Number)
	}
}

// RFC 6887 §7.4, §8.1: a refused set (USER_EX_QUOTA) is counted and not
// asked for again within the error's lifetime; the flows past the ports
// held are counted drops.
func TestPoolRefusedBacksOff(t *testing.T) {
	p := newPoolEnv(t, 2, nil)
	p.flows(52)
	waitStatus(t, p.b, 5*time.Second, "a second set", func(s Status) bool { return len(s.Sets) == 2 })
	p.flows(60) // 112 of 128: set 3 asked, refused
	waitFor(t, 5*time.Second, "a refusal counted", func() bool { return pkts(p.b, "pool-refused") == 1 })
	p.flows(30) // 142 flows on 128 ports
	waitFor(t, 5*time.Second, "14 drops", func() bool { return p.b.Status().NAT.DropOut.PortsExhausted == 14 })
	time.Sleep(500 * time.Millisecond) // many pool ticks, all within the 30 s
	asked, _, _ := p.sh.snapshot()
	if len(asked) != 3 || asked[2] != 3 {
		t.Errorf("requests %v, want 0, 2 and one refused 3", asked)
	}
	if s := p.b.Status(); len(s.Sets) != 2 || pkts(p.b, "pool-refused") != 1 {
		t.Errorf("sets %v, refusals %d", setsOf(s), pkts(p.b, "pool-refused"))
	}
}

// docs/port-sets.md: a set granted on another address is given back at
// once and counted, never put in the NAT.
func TestPoolRefusesOtherAddress(t *testing.T) {
	p := newPoolEnv(t, 8, nil)
	p.sh.mu.Lock()
	p.sh.elsewhere = 2
	p.sh.mu.Unlock()
	p.flows(60)
	waitFor(t, 5*time.Second, "the set given back", func() bool {
		_, d, _ := p.sh.snapshot()
		return pkts(p.b, "pool-drop-set-other-address") >= 1 && len(d) >= 1 && d[0] == 2
	})
	if s := p.b.Status(); len(s.Sets) != 1 || s.NAT.Ports != 64 {
		t.Errorf("sets %v, %d ports: the other address's set is in use", setsOf(s), s.NAT.Ports)
	}
}

// When the first set is lost (ICMPv6 1/5, lostBinding) the B4 asks for it
// again and renews its added sets at once, suggesting the same ones; the
// NAT keeps what it held (issue 11 item 3).
func TestPoolFollowsLostBinding(t *testing.T) {
	p := newPoolEnv(t, 8, nil)
	p.flows(60)
	waitStatus(t, p.b, 5*time.Second, "a second set", func(s Status) bool { return len(s.Sets) == 2 })
	before := p.sh.requests(2)
	p.b.lostBinding("test")
	waitFor(t, 5*time.Second, "set 2 renewed at once", func() bool { return p.sh.requests(2) > before })
	s := waitStatus(t, p.b, 10*time.Second, "provisioned again", func(s Status) bool { return s.Provisioned && len(s.Sets) == 2 })
	if s.NAT.Ports != 128 {
		t.Errorf("%d ports after re-provisioning, want both sets' 128", s.NAT.Ports)
	}
}

// requests counts the requests with a lifetime for set n.
func (h *setsHandler) requests(n uint16) int {
	asked, _, _ := h.snapshot()
	c := 0
	for _, a := range asked {
		if a == n {
			c++
		}
	}
	return c
}
