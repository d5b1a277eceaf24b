package pcp

import (
	"testing"
	"time"
)

func TestEpochValid(t *testing.T) {
	cases := []struct {
		name                   string
		prevServer, currServer uint32
		prevClient, currClient int64
		want                   bool
	}{
		{"RFC6887 §8.5: both advance 10 s", 100, 110, 0, 10, true},
		{"RFC6887 §8.5: reordering, server back 1 s, client still", 100, 99, 50, 50, true},
		{"RFC6887 §8.5: reordering, server back 1 s, client +1 s", 100, 99, 50, 51, true},
		{"RFC6887 §8.5: server back 1 s after 5 s is a restart", 100, 99, 50, 55, false},
		{"RFC6887 §8.5: server back 2 s", 100, 98, 50, 50, false},
		{"RFC6887 §8.5: server reset to 0", 5000, 0, 0, 5000, false},
		{"RFC6887 §8.5: server back 1 s from 0 cannot underflow", 0, 0, 7, 7, true},
		{"RFC6887 §8.5: +2 quantisation", 100, 112, 0, 10, true},
		{"RFC6887 §8.5: server 3 s ahead in 10 s", 100, 113, 0, 10, false},
		{"RFC6887 §8.5: server fast within 1/16", 0, 1060, 0, 1000, true},
		{"RFC6887 §8.5: server fast beyond 1/16", 0, 1070, 0, 1000, false},
		{"RFC6887 §8.5: server slow within 1/16", 0, 937, 0, 1000, true},
		{"RFC6887 §8.5: server slow beyond 1/16", 0, 935, 0, 1000, false},
		{"RFC6887 §8.5: same instant", 42, 42, 9, 9, true},
		{"RFC6887 §8.5: server restart long ago, server behind", 100000, 3600, 0, 100000 + 3600, false},
	}
	for _, tc := range cases {
		if got := epochValid(tc.prevServer, tc.currServer, tc.prevClient, tc.currClient); got != tc.want {
			t.Errorf("%s: epochValid(%d, %d, %d, %d) = %v", tc.name, tc.prevServer, tc.currServer, tc.prevClient, tc.currClient, got)
		}
	}
}

func TestEpochCheckSequence(t *testing.T) {
	var e epochCheck
	steps := []struct {
		server uint32
		client int64
		want   bool
		why    string
	}{
		{9999, 0, true, "RFC6887 §8.5: the first response is always valid"},
		{10009, 10, true, "in step"},
		{10008, 10, true, "reordered by one second"},
		{3, 20, false, "server restarted"},
		{13, 30, true, "RFC6887 §8.5: prev_* were recorded even for the invalid one"},
	}
	for _, s := range steps {
		if got := e.check(s.server, s.client); got != s.want {
			t.Fatalf("%s: check(%d, %d) = %v", s.why, s.server, s.client, got)
		}
	}
}

// RFC 6887 §8.5: a server restarted with its state continues its Epoch from
// the recorded start instead of 0; ResetEpoch starts it again.
func TestServerEpochStart(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s := NewServer(ServerConfig{Now: clock, EpochStart: now.Add(-1000 * time.Second)})
	if e := s.Epoch(); e != 1000 {
		t.Errorf("Epoch %d, want 1000 from the recorded start", e)
	}
	if !s.EpochStart().Equal(now.Add(-1000 * time.Second)) {
		t.Errorf("EpochStart %v", s.EpochStart())
	}
	s.ResetEpoch()
	if e := s.Epoch(); e != 0 || !s.EpochStart().Equal(now) {
		t.Errorf("after reset: Epoch %d start %v", e, s.EpochStart())
	}
	if e := NewServer(ServerConfig{Now: clock}).Epoch(); e != 0 {
		t.Errorf("fresh server Epoch %d", e)
	}
}
