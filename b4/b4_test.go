package b4

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
	"github.com/lw4o6/lw4o6/stack/portset"
)

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Config)
		want string // in the message
	}{
		{"Addr unset", func(c *Config) { c.Addr = netip.Addr{} }, "Addr"},
		{"Addr IPv4", func(c *Config) { c.Addr = netip.MustParseAddr("192.0.2.1") }, "Addr"},
		{"Addr IPv4-mapped", func(c *Config) { c.Addr = netip.MustParseAddr("::ffff:192.0.2.1") }, "Addr"},
		{"Addr multicast", func(c *Config) { c.Addr = netip.MustParseAddr("ff02::1") }, "Addr"},
		{"AFTR unspecified", func(c *Config) { c.AFTR = netip.IPv6Unspecified() }, "AFTR"},
		{"AFTR IPv4", func(c *Config) { c.AFTR = netip.MustParseAddr("192.0.0.1") }, "AFTR"},
		{"Gateway unset", func(c *Config) { c.Gateway = netip.Addr{} }, "Gateway"},
		{"Gateway IPv6", func(c *Config) { c.Gateway = netip.MustParseAddr("2001:db8::1") }, "Gateway"},
		{"RFC 7753 §4: PortSetSize 0", func(c *Config) { c.PortSetSize = 0 }, "PortSetSize"},
		{"Lifetime under 1 s", func(c *Config) { c.Lifetime = 500 * time.Millisecond }, "Lifetime"},
		{"HopLimit 0", func(c *Config) { c.HopLimit = 0 }, "HopLimit"},
		{"TunnelMTU below 576", func(c *Config) { c.TunnelMTU = 500 }, "TunnelMTU"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.mod(&cfg)
			b, err := New(cfg, newChanLink(), newChanLink())
			if err == nil {
				b.Close()
				t.Fatal("New accepted the configuration")
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q: want ErrConfig naming %s", err, tc.want)
			}
		})
	}
	t.Run("nil link", func(t *testing.T) {
		if _, err := New(testConfig(), nil, newChanLink()); !errors.Is(err, ErrConfig) {
			t.Errorf("nil LAN link: %v, want ErrConfig", err)
		}
		if _, err := New(testConfig(), newChanLink(), nil); !errors.Is(err, ErrConfig) {
			t.Errorf("nil access link: %v, want ErrConfig", err)
		}
	})
	t.Run("defaults with addresses are valid", func(t *testing.T) {
		b, err := New(testConfig(), newChanLink(), newChanLink())
		if err != nil {
			t.Fatal(err)
		}
		b.Close()
	})
}

// checkMapRequest checks a port-set request against PROTOCOL.md §8 item 1
// and §3.7: MAP, protocol 0, internal port 0, PORT_SET {size, first
// internal port 0, P 0}, client IP ::ffff:192.0.0.2, suggestions as given
// (wantIP in its 16-octet wire form); carried in 4in6 from the B4's address
// to the AFTR's, inner 192.0.0.2 -> 192.0.0.1:5351.
func checkMapRequest(t *testing.T, r pcpSeen, cfg Config, wantIP netip.Addr, wantPort uint16) {
	t.Helper()
	if r.outer.SrcAddr() != cfg.Addr || r.outer.DstAddr() != cfg.AFTR {
		t.Errorf("outer %v -> %v, want %v -> %v", r.outer.SrcAddr(), r.outer.DstAddr(), cfg.Addr, cfg.AFTR)
	}
	if r.outer.NextHeader != packet.ProtoIPIP || r.outer.HopLimit != cfg.HopLimit {
		t.Errorf("outer next header %d hop limit %d, want 4 and %d", r.outer.NextHeader, r.outer.HopLimit, cfg.HopLimit)
	}
	if r.inner.Src() != addrB4 || r.inner.Dst() != addrAFTR4 {
		t.Errorf("inner %v -> %v, want 192.0.0.2 -> 192.0.0.1", r.inner.SrcAddr(), r.inner.DstAddr())
	}
	raw := r.raw
	if len(raw) < pcp.HeaderLen+pcp.MapDataLen || raw[0] != pcp.Version || raw[1] != byte(pcp.OpMap) {
		t.Fatalf("not a MAP request: %x", raw)
	}
	if got, want := [16]byte(raw[8:24]), netip.MustParseAddr("::ffff:192.0.0.2").As16(); got != want {
		t.Errorf("Client IP %x, want ::ffff:192.0.0.2", got)
	}
	m := r.msg
	if m == nil || m.Map == nil {
		t.Fatalf("request does not parse: %x", raw)
	}
	if m.Map.Protocol != 0 || m.Map.InternalPort != 0 {
		t.Errorf("protocol %d internal port %d, want 0 and 0", m.Map.Protocol, m.Map.InternalPort)
	}
	if got := [16]byte(raw[44:60]); got != wantIP.As16() {
		t.Errorf("Suggested External IP %v, want %v", netip.AddrFrom16(got), wantIP)
	}
	if m.Map.ExternalPort != wantPort {
		t.Errorf("Suggested External Port %d, want %d", m.Map.ExternalPort, wantPort)
	}
	if m.Lifetime != uint32(cfg.Lifetime/time.Second) {
		t.Errorf("requested lifetime %d, want %d", m.Lifetime, uint32(cfg.Lifetime/time.Second))
	}
	ps, ok, err := m.PortSet()
	if !ok || err != nil {
		t.Fatalf("no PORT_SET (%v)", err)
	}
	if ps != (pcp.PortSet{Size: cfg.PortSetSize}) {
		t.Errorf("PORT_SET %+v, want size %d, first internal port 0, P 0", ps, cfg.PortSetSize)
	}
}

var anyIPv4 = netip.MustParseAddr("::ffff:0.0.0.0")

// PROTOCOL.md §8 item 1: the first request and what the answer installs.
func TestProvisionRequest(t *testing.T) {
	for _, size := range []uint16{65535, 1024} {
		t.Run(fmt.Sprintf("PortSetSize %d", size), func(t *testing.T) {
			e := newEnv(t, newHandler(3600), func(c *Config) { c.PortSetSize = size })
			if s := e.b.Status(); s.Provisioned || s.Provisionings != 0 {
				t.Fatalf("status before Run: %+v", s)
			}
			r, s := e.provisioned()
			checkMapRequest(t, r, e.b.cfg, anyIPv4, 0)
			want := portset.Range{First: testFirst, Size: uint32(min(size, testSize))}
			if s.PublicIPv4 != testPublic || s.Ports != want || s.Lifetime != time.Hour || s.Provisionings != 1 {
				t.Errorf("status %+v: want %v, ports %v, lifetime 1h, 1 provisioning", s, testPublic, want)
			}
			if d := time.Until(s.Expires); d < 59*time.Minute || d > time.Hour {
				t.Errorf("Expires in %v, want about 1h", d)
			}
			if addr, ports, ok := e.b.nat.External(); !ok || addr != testPublic || ports.Len() != int(want.Size) || ports.Nth(0) != testFirst {
				t.Errorf("NAT external %v %v %v", addr, ports, ok)
			}
			if s.Counters["in-to-self-ipv4-packets"] != 1 {
				t.Errorf("in-to-self-ipv4 = %d, want 1 (the answer)", s.Counters["in-to-self-ipv4-packets"])
			}
			e.noReq(200 * time.Millisecond) // answered: no retransmission
		})
	}
}

// RFC 6887 §11.1: the nonce of Config.Nonce is sent (PROTOCOL.md §8 item 6).
func TestProvisionConfiguredNonce(t *testing.T) {
	nonce := [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	e := newEnv(t, newHandler(3600), func(c *Config) { c.Nonce = &nonce })
	r, _ := e.provisioned()
	if r.msg.Map.Nonce != nonce {
		t.Errorf("nonce %x, want %x", r.msg.Map.Nonce, nonce)
	}
}

// AddPortForward maps a port of the set to a LAN host (an inbound mapping).
func TestAddPortForward(t *testing.T) {
	e := newEnv(t, newHandler(3600), nil)
	internal := netip.AddrPortFrom(testHost2, 8080)
	if _, err := e.b.AddPortForward(packet.ProtoUDP, internal, 5000, time.Hour); !errors.Is(err, ErrNotProvisioned) {
		t.Fatalf("before provisioning: %v, want ErrNotProvisioned", err)
	}
	e.provisioned()
	port, err := e.b.AddPortForward(packet.ProtoUDP, internal, 5000, time.Hour)
	if err != nil || port != 5000 {
		t.Fatalf("AddPortForward = %d, %v; want 5000", port, err)
	}
	e.b.FromAccess(softwire(testAFTR, testB4, 0, udp4(netip.AddrPortFrom(testRemote, 999), netip.AddrPortFrom(testPublic, 5000), 0, 50, []byte("in"))))
	ip4 := e.nextLAN(time.Second)
	var u packet.UDP
	if err := packet.ParseUDP4(ip4, &u); err != nil || ip4.DstAddr() != testHost2 || u.DstPort != 8080 {
		t.Errorf("forwarded to %v:%d (%v), want %v", ip4.DstAddr(), u.DstPort, err, internal)
	}
	if err := e.b.RemovePortForward(packet.ProtoUDP, internal); err != nil {
		t.Errorf("RemovePortForward: %v", err)
	}
}

// Run returns promptly when its context is cancelled, both while it waits
// to renew and while a request is outstanding (retransmitting).
func TestRunCancel(t *testing.T) {
	t.Run("provisioned", func(t *testing.T) {
		e := newEnv(t, newHandler(3600), nil)
		e.provisioned()
		stopWithin(t, e, 500*time.Millisecond)
	})
	t.Run("request outstanding", func(t *testing.T) {
		e := newEnv(t, newHandler(3600), nil)
		e.aftr.silent.Store(true)
		e.run()
		e.nextReq(2 * time.Second)
		stopWithin(t, e, 500*time.Millisecond)
	})
	t.Run("waiting out an error lifetime", func(t *testing.T) {
		h := newHandler(60)
		h.result = pcp.NoResources
		e := newEnv(t, h, nil)
		e.run()
		e.nextReq(2 * time.Second)
		stopWithin(t, e, 500*time.Millisecond)
	})
}

func stopWithin(t *testing.T, e *env, d time.Duration) {
	t.Helper()
	start := time.Now()
	e.cancel()
	select {
	case err := <-e.ran:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		e.ran <- nil // for e.stop
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if el := time.Since(start); el > d {
		t.Errorf("Run returned %v after cancel, want under %v", el, d)
	}
}

// A B4 that ran, provisioned and moved traffic leaves no goroutine behind
// once Run has returned and Close was called.
func TestNoGoroutineLeak(t *testing.T) {
	cycle := func() {
		e := newEnv(t, newHandler(3600), nil)
		r, _ := e.provisioned()
		e.b.FromLAN(udp4(netip.AddrPortFrom(testHost, 5000), netip.AddrPortFrom(testRemote, 53), 0, 64, []byte("q")))
		e.nextData(time.Second)
		// an ANNOUNCE leaves a state-loss wait of 0-5 s pending
		e.aftr.srv.ResetEpoch()
		e.b.FromAccess(e.aftr.toSelf(pcp.ServerPort, r.sport, e.aftr.srv.Announce()))
		e.stop()
	}
	cycle() // warm up: gVisor starts some process-wide goroutines once
	before := settledGoroutines(0)
	cycle()
	after := settledGoroutines(before + 2)
	if after > before+2 {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d before, %d after\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

// settledGoroutines waits up to 2 s for the goroutine count to reach at
// most want (0: to stop changing) and returns it.
func settledGoroutines(want int) int {
	n := runtime.NumGoroutine()
	for range 40 {
		time.Sleep(50 * time.Millisecond)
		m := runtime.NumGoroutine()
		if want > 0 && m <= want || want == 0 && m == n {
			return m
		}
		n = m
	}
	return n
}
