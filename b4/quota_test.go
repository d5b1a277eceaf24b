package b4

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/b4/nat"
	"github.com/lw4o6/lw4o6/stack/packet"
)

// lanICMP drains the LAN side of an env, counting the ICMPv4 destination
// unreachable errors each host receives, by code.
type lanICMP struct {
	mu   sync.Mutex
	seen map[netip.Addr]map[uint8]int
	stop chan struct{}
	done chan struct{}
}

func drainLAN(e *env) *lanICMP {
	l := &lanICMP{seen: map[netip.Addr]map[uint8]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			select {
			case <-l.stop:
				return
			case p := <-e.lan.ch:
				ip4, err := packet.ParseIPv4(p)
				if err != nil || ip4.Protocol() != packet.ProtoICMP {
					continue
				}
				icmp := ip4.Payload()
				if len(icmp) < 8 || icmp[0] != packet.ICMPv4DstUnreachable {
					continue
				}
				l.mu.Lock()
				if l.seen[ip4.DstAddr()] == nil {
					l.seen[ip4.DstAddr()] = map[uint8]int{}
				}
				l.seen[ip4.DstAddr()][icmp[1]]++
				l.mu.Unlock()
			}
		}
	}()
	e.t.Cleanup(func() { close(l.stop); <-l.done })
	return l
}

// flood opens n new UDP flows from testHost like poolEnv.flows, paced on
// the LAN side too, where the ICMP errors go.
func flood(p *poolEnv, n int) {
	for range n {
		for len(p.aftr.in) > 8 || len(p.aftr.data) > 32 || len(p.lan.ch) > 32 {
			time.Sleep(time.Millisecond)
		}
		p.b.FromLAN(udp4(netip.AddrPortFrom(testHost, p.next), netip.AddrPortFrom(testRemote, 53), 0, 64, []byte("x")))
		p.next++
	}
}

func (l *lanICMP) count(host netip.Addr, code uint8) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[host][code]
}

// Issue 11 item 7, RFC 6888 REQ-4 and REQ-11: host A floods new UDP flows
// at a B4 holding one set of 64 ports. Without a per-host quota A takes
// every port and host B's flows are dropped (the hole); with the default
// quota (a quarter of the ports held) A gets 16 ports, its excess is
// dropped as HostQuota and answered, rate-limited, with ICMP host
// unreachable, and B still gets ports. A's existing flows go on, and A's
// quota frees when its flows idle out.
func TestHostQuotaFloodDoesNotBlockOthers(t *testing.T) {
	for _, quota := range []bool{false, true} {
		name := "no-quota"
		if quota {
			name = "default-quota"
		}
		t.Run(name, func(t *testing.T) {
			p := newPoolEnv(t, 1, func(c *Config) {
				c.MaxSets = 1
				if quota {
					c.NAT = DefaultConfig().NAT
				}
			})
			icmp := drainLAN(p.env)
			start := time.Now()
			flood(p, 200) // host A, one packet per flow, ports 10000-10199
			took := time.Since(start)
			hostB := func(n int) {
				for i := range n {
					p.b.FromLAN(udp4(netip.AddrPortFrom(testHost2, uint16(20000+i)), netip.AddrPortFrom(testRemote, 53), 0, 64, []byte("b")))
				}
			}
			hostB(10)
			st := p.b.Status().NAT // FromLAN is synchronous: the counters are final
			if !quota {
				if st.DropOut.PortsExhausted != 200-64+10 || st.TranslatedOut != 64 {
					t.Fatalf("without a quota: %d translated, %d PortsExhausted; want host A holding all 64 ports and B refused",
						st.TranslatedOut, st.DropOut.PortsExhausted)
				}
				return
			}
			if st.HostPortQuota != 16 || st.DropOut.HostQuota != 200-16 || st.DropOut.PortsExhausted != 0 || st.TranslatedOut != 16+10 {
				t.Fatalf("with the quota: %+v", st)
			}
			if u := p.b.nat.HostUsage(testHost2); u.UDP != 10 {
				t.Fatalf("host B holds %+v, want its 10 flows", u)
			}
			// A's existing flow goes on.
			p.b.FromLAN(udp4(netip.AddrPortFrom(testHost, 10000), netip.AddrPortFrom(testRemote, 53), 0, 64, []byte("a")))
			if got := p.b.Status().NAT.TranslatedOut; got != 16+10+1 {
				t.Fatalf("A's existing flow: translated %d, want %d", got, 16+10+1)
			}
			// RFC 6888 REQ-11b: each refusal is answered with host
			// unreachable or left unanswered by the rate limit, counted;
			// no more than natICMPRate a second (plus the burst); none
			// to B.
			limited := func() int { return int(pkts(p.b, "nat-refused-icmp-rate-limited")) }
			waitFor(t, 5*time.Second, "every refusal answered or counted", func() bool { return icmp.count(testHost, 1)+limited() == 200-16 })
			if n, most := icmp.count(testHost, 1), natICMPRate*(1+took.Seconds())+1; n == 0 || float64(n) > most {
				t.Errorf("%d host unreachable in %v (%d rate-limited), want 1 to %.0f", n, took, limited(), most)
			}
			if n := icmp.count(testHost2, 1); n != 0 {
				t.Errorf("host B got %d host unreachable", n)
			}

			// A's flows idle out (RFC 4787 REQ-5: 2 min at least; the
			// clock jumps) and Run's Expire removes them: A has its
			// quota again.
			p.shift.Add(int64(6 * time.Minute))
			waitFor(t, 10*time.Second, "host A's mappings gone", func() bool { return p.b.nat.HostUsage(testHost) == (nat.HostUsage{}) })
			p.next = 30000
			flood(p, 16)
			if st := p.b.Status().NAT; st.DropOut.HostQuota != 200-16 || p.b.nat.HostUsage(testHost).UDP != 16 {
				t.Fatalf("after the idle timeout: %d HostQuota drops, host A %+v", st.DropOut.HostQuota, p.b.nat.HostUsage(testHost))
			}
		})
	}
}

// Hostile NAT quotas are a configuration error.
func TestConfigNATQuota(t *testing.T) {
	for _, n := range []nat.Config{{HostPorts: -1}, {HostSessions: -5}, {HostPortShare: 2}} {
		c := testConfig()
		c.NAT = n
		if _, err := New(c, newChanLink(), newChanLink()); err == nil {
			t.Errorf("NAT %+v accepted", n)
		}
	}
	if n := DefaultConfig().NAT; n.HostPortShare != nat.DefaultHostPortShare || n.HostSessions != nat.DefaultHostSessions {
		t.Errorf("defaults %+v", n)
	}
}
