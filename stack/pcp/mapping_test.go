package pcp

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestRenewal(t *testing.T) {
	r0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := &Mapping{Lifetime: 1000 * time.Second, Received: r0}
	at := func(s float64) time.Time { return r0.Add(time.Duration(s * float64(time.Second))) }
	lo, hi := &seqRand{v: []float64{0}}, &seqRand{v: []float64{1}}

	if got := m.RenewAt(lo); !got.Equal(at(500)) {
		t.Errorf("RFC6887 §11.2.1: RenewAt low = %v", got.Sub(r0))
	}
	if got := m.RenewAt(hi); !got.Equal(at(625)) {
		t.Errorf("RFC6887 §11.2.1: RenewAt high = %v", got.Sub(r0))
	}
	windows := [][2]float64{{500, 625}, {750, 812.5}, {875, 906.25}, {937.5, 953.125}}
	for n, w := range windows {
		a, ok1 := m.Renewal(n, time.Time{}, lo)
		b, ok2 := m.Renewal(n, time.Time{}, hi)
		if !ok1 || !ok2 || !a.Equal(at(w[0])) || !b.Equal(at(w[1])) {
			t.Errorf("RFC6887 §11.2.1: attempt %d window [%v, %v], want %v", n, a.Sub(r0), b.Sub(r0), w)
		}
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		a := m.RenewAt(rnd)
		if a.Before(at(500)) || a.After(at(625)) {
			t.Fatalf("RenewAt %v outside [1/2, 5/8]", a.Sub(r0))
		}
	}
	// §11.2.1: never closer than 4 s apart, never after expiry.
	if a, ok := m.Renewal(3, at(995), lo); !ok || !a.Equal(at(999)) {
		t.Errorf("RFC6887 §11.2.1: 4 s gap: %v %v", a.Sub(r0), ok)
	}
	if _, ok := m.Renewal(4, at(999), lo); ok {
		t.Error("renewal after expiry")
	}
	var prev time.Time
	n := 0
	for ; ; n++ {
		a, ok := m.Renewal(n, prev, nil)
		if !ok {
			break
		}
		if !prev.IsZero() && a.Sub(prev) < MinRenewalGap {
			t.Fatalf("attempts %v apart", a.Sub(prev))
		}
		prev = a
	}
	if n < 5 || n > 20 {
		t.Errorf("%d renewal attempts in 1000 s", n)
	}
	short := &Mapping{Lifetime: 8 * time.Second, Received: r0}
	first := short.RenewAt(lo)
	if _, ok := short.Renewal(1, first, lo); ok {
		t.Error("8 s lifetime: second attempt 4 s after the first would be at expiry")
	}
	if got := (&Mapping{Received: r0}).RenewAt(nil); !got.IsZero() {
		t.Errorf("lifetime 0: RenewAt = %v", got)
	}
	if capLifetime(0xffffffff) != MaxLifetime || capLifetime(60) != time.Minute {
		t.Error("RFC6887 §15: lifetime cap")
	}
}

func TestNextRT(t *testing.T) {
	cases := []struct {
		prev time.Duration
		u    float64
		want time.Duration
	}{
		{0, 0, 2700 * time.Millisecond},
		{0, 0.5, 3 * time.Second},
		{0, 1, 3300 * time.Millisecond},
		{3 * time.Second, 0.5, 6 * time.Second},
		{600 * time.Second, 0.5, MRT},
		{1126 * time.Second, 1, time.Duration(float64(MRT) * 1.1)},
		{1126 * time.Second, 0, time.Duration(float64(MRT) * 0.9)},
	}
	for _, tc := range cases {
		if got := nextRT(tc.prev, tc.u); got != tc.want {
			t.Errorf("RFC6887 §8.1.1: nextRT(%v, %v) = %v, want %v", tc.prev, tc.u, got, tc.want)
		}
	}
}
