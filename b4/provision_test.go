package b4

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
)

var heldIP = netip.MustParseAddr("::ffff:203.0.113.9") // the suggestion of a renewal, as sent

// TestTimers runs the tests that wait for the provisioning timers. The
// timers are real (the B4's Now clock drives none), so these tests take
// seconds each; they run concurrently, through t.Run from goroutines,
// which -parallel (GOMAXPROCS by default) does not limit.
func TestTimers(t *testing.T) {
	tests := []struct {
		name string
		f    func(*testing.T)
	}{
		{"renewal", testRenewal(nil)},
		{"renewal, Now a day ahead", testRenewal(func() time.Time { return time.Now().Add(24 * time.Hour) })},
		{"expiry without renewal", testExpiryWithoutRenewal},
		{"error answer", testErrorAnswer},
		{"renewal refused", testRenewalRefused},
		{"ANNOUNCE epoch reset", testAnnounceEpochReset},
		{"ANNOUNCE epoch valid", testAnnounceEpochValid},
		{"epoch check fails", testEpochCheckFails},
	}
	var wg sync.WaitGroup
	for _, tc := range tests {
		wg.Go(func() { t.Run(tc.name, tc.f) })
	}
	wg.Wait()
}

// RFC 6887 §11.2.1, PROTOCOL.md §1.9, §8 item 1: with an 8 s lifetime the
// renewal goes out between 4 s and 5 s after the answer, suggests the held
// address and first port, keeps the nonce, and extends the binding without
// counting as a new provisioning. With Config.Now = now: a clock that is
// off (a day ahead) must not change when the B4 renews.
func testRenewal(now func() time.Time) func(*testing.T) {
	return func(t *testing.T) {
		e := newEnv(t, newHandler(8), func(cfg *Config) { cfg.Now = now })
		r1, s1 := e.provisioned()
		if d := s1.Expires.Sub(e.b.now()); d < 7*time.Second || d > 8*time.Second {
			t.Errorf("Expires %v from the B4's now, want 8 s", d)
		}
		r2 := e.nextReq(7 * time.Second)
		// The lower bound is the protocol's (never before half the
		// lifetime); the upper one only that it came before the expiry,
		// since a loaded machine delays timers.
		if gap := r2.at.Sub(r1.at); gap < 4*time.Second-50*time.Millisecond || gap >= 8*time.Second {
			t.Errorf("renewal %v after the answer, want in [4 s, 5 s] (and before the 8 s expiry)", gap)
		}
		checkMapRequest(t, r2, e.b.cfg, heldIP, testFirst)
		if r2.msg.Map.Nonce != r1.msg.Map.Nonce {
			t.Error("RFC 6887 §11.2.1: renewal with another nonce")
		}
		s2 := waitStatus(t, e.b, 2*time.Second, "renewed", func(s Status) bool { return s.Expires.After(s1.Expires) })
		if !s2.Provisioned || s2.Provisionings != 1 || s2.Expires.Sub(s1.Expires) < 3*time.Second {
			t.Errorf("after renewal %+v (before: expires %v)", s2, s1.Expires)
		}
		if s2.Counters["reprovision-packets"] != 0 {
			t.Error("renewal counted as reprovision")
		}
	}
}

// RFC 6887 §11.2.1, §15: a binding that is not renewed lapses at the end
// of its lifetime; the B4 drops the set and asks again.
func testExpiryWithoutRenewal(t *testing.T) {
	e := newEnv(t, newHandler(3), nil)
	r1, _ := e.provisioned()
	e.aftr.silent.Store(true)
	r2 := e.nextReq(3 * time.Second) // the renewal, at 1.5-1.875 s
	checkMapRequest(t, r2, e.b.cfg, heldIP, testFirst)
	waitStatus(t, e.b, 3*time.Second, "set dropped at expiry", func(s Status) bool { return !s.Provisioned })
	if el := time.Since(r1.at); el < 3*time.Second-50*time.Millisecond {
		t.Errorf("set dropped %v after a 3 s grant", el)
	}
	e.aftr.silent.Store(false)
	s := waitStatus(t, e.b, 5*time.Second, "provisioned again", func(s Status) bool { return s.Provisioned })
	if s.Provisionings != 2 {
		t.Errorf("Provisionings = %d, want 2", s.Provisionings)
	}
}

// RFC 6887 §7.4, §8.3, §11.4: an error answer (NO_RESOURCES, lifetime 2 s)
// leaves the B4 unprovisioned; it does not ask again within the error's
// lifetime, then does.
func testErrorAnswer(t *testing.T) {
	h := newHandler(2)
	h.result = pcp.NoResources
	e := newEnv(t, h, nil)
	e.run()
	r1 := e.nextReq(2 * time.Second)
	// The fake AFTR reports a request before its handler answers it: wait
	// for the NO_RESOURCES answer, or r1 itself might be answered with
	// the success below.
	waitFor(t, 2*time.Second, "the NO_RESOURCES answer", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.n >= 1
	})
	h.set(func(h *handler) { h.result, h.lifetime = pcp.Success, 3600 })
	// The upper bound only checks that the B4 does ask again; it is loose
	// because CI machines are loaded.
	r2 := e.nextReq(8 * time.Second)
	if gap := r2.at.Sub(r1.at); gap < 2*time.Second || gap > 6*time.Second {
		t.Errorf("asked again %v after a 2 s NO_RESOURCES, want just after 2 s", gap)
	}
	checkMapRequest(t, r2, e.b.cfg, anyIPv4, 0)
	s := waitStatus(t, e.b, 2*time.Second, "provisioned", func(s Status) bool { return s.Provisioned })
	if s.Provisionings != 1 {
		t.Errorf("Provisionings = %d, want 1", s.Provisionings)
	}
}

// RFC 6887 §11.2.1, §15: a refused renewal (NO_RESOURCES for 30 s) does
// not keep the set alive past its lifetime, and the B4 does not ask again
// within the error's lifetime.
func testRenewalRefused(t *testing.T) {
	h := newHandler(4)
	e := newEnv(t, h, nil)
	r1, _ := e.provisioned()
	h.set(func(h *handler) { h.result, h.lifetime = pcp.NoResources, 30 })
	e.nextReq(3 * time.Second) // the renewal, at 2-2.5 s
	waitStatus(t, e.b, 3*time.Second, "set dropped at expiry", func(s Status) bool { return !s.Provisioned })
	if el := time.Since(r1.at); el < 4*time.Second-50*time.Millisecond {
		t.Errorf("set dropped %v after a 4 s grant", el)
	}
	e.noReq(time.Second)
}

// RFC 6887 §14.1.3, PROTOCOL.md §8 item 5: an ANNOUNCE whose Epoch shows
// that the AFTR lost state makes the B4 renew, within 0-5 s, suggesting the
// address and port it holds; the set stays in use meanwhile.
func testAnnounceEpochReset(t *testing.T) {
	e := newEnv(t, newHandler(3600), nil)
	e.aftr.epochOff.Store(int64(1000 * time.Second)) // the AFTR has been up 1000 s
	r1, s1 := e.provisioned()
	if s1.Epoch < 1000 || s1.Epoch > 1002 {
		t.Errorf("Status.Epoch = %d, want 1000", s1.Epoch)
	}
	e.aftr.srv.ResetEpoch()
	sent := time.Now()
	e.b.FromAccess(e.aftr.toSelf(pcp.ServerPort, r1.sport, e.aftr.srv.Announce()))
	r2 := e.nextReq(7 * time.Second)
	if gap := r2.at.Sub(sent); gap > 5*time.Second+500*time.Millisecond {
		t.Errorf("renewal %v after the ANNOUNCE, want within 5 s", gap)
	}
	checkMapRequest(t, r2, e.b.cfg, heldIP, testFirst)
	if r2.msg.Map.Nonce != r1.msg.Map.Nonce {
		t.Error("renewal with another nonce")
	}
	s := waitStatus(t, e.b, 2*time.Second, "renewed", func(s Status) bool { return s.Epoch < 10 })
	if !s.Provisioned || s.Provisionings != 1 {
		t.Errorf("status %+v, want provisioned once", s)
	}
}

// RFC 6887 §14.1.3: an ANNOUNCE with an Epoch in range asks for nothing.
func testAnnounceEpochValid(t *testing.T) {
	e := newEnv(t, newHandler(3600), nil)
	e.aftr.epochOff.Store(int64(1000 * time.Second))
	r1, _ := e.provisioned()
	e.b.FromAccess(e.aftr.toSelf(pcp.ServerPort, r1.sport, e.aftr.srv.Announce()))
	e.noReq(5500 * time.Millisecond)
}

// RFC 6887 §8.5, §16.3.1: a response whose Epoch fails the check (the
// AFTR lost state) makes the B4 renew at once with its old address and port.
func testEpochCheckFails(t *testing.T) {
	e := newEnv(t, newHandler(3600), nil)
	e.aftr.epochOff.Store(int64(1000 * time.Second))
	r1, _ := e.provisioned()
	sent, _ := outbound(t, e, netip.AddrPortFrom(testHost, 5000), netip.AddrPortFrom(testRemote, 53), 0, 64, nil)
	// The AFTR restarts: Epoch 0, and it answers the B4's traffic with 1/5.
	e.aftr.srv.ResetEpoch()
	e.b.FromAccess(icmp6(testAFTR, packet.ICMPv6CodeSourcePolicy, sent))
	r2 := e.nextReq(2 * time.Second) // provisioning again; its answer has Epoch 0
	r3 := e.nextReq(2 * time.Second) // the renewal the Epoch check asks for
	if gap := r3.at.Sub(r2.at); gap > time.Second {
		t.Errorf("renewal %v after the failed Epoch check", gap)
	}
	checkMapRequest(t, r3, e.b.cfg, heldIP, testFirst)
	if r3.msg.Map.Nonce != r1.msg.Map.Nonce {
		t.Error("renewal with another nonce")
	}
	s := waitStatus(t, e.b, 2*time.Second, "provisioned", func(s Status) bool { return s.Provisioned })
	if s.Provisionings != 2 {
		t.Errorf("Provisionings = %d, want 2", s.Provisionings)
	}
}
