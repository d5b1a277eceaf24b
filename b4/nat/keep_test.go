package nat

import (
	"errors"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/portset"
)

// Issue 11 item 3, RFC 7596 §5.1: a new port set under the same address
// keeps the mappings and sessions whose external port it still holds and
// removes the rest; flows on kept ports go on translating to the same port.
func TestSetExternalKeepsWhatStillFits(t *testing.T) {
	tb, _ := newTable(t, Config{})
	if err := tb.SetExternal(pub, portset.Range{First: 4096, Size: 2048}); err != nil {
		t.Fatal(err)
	}
	// Port preservation (RFC 4787 REQ-3): source 4200 maps to 4200, 6000 to 6000.
	in, out := udpPacket(ap(lanA, 4200), ap(remote1, 53), nil), udpPacket(ap(lanA, 6000), ap(remote1, 53), nil)
	mustOut(t, tb, in)
	mustOut(t, tb, out)
	if srcOf(in).Port() != 4200 || srcOf(out).Port() != 6000 {
		t.Fatalf("translated to %v and %v, want ports preserved", srcOf(in), srcOf(out))
	}
	if p, err := tb.AddExplicit(protoTCP, ap(lanB, 8080), 4100, time.Hour); err != nil || p != 4100 {
		t.Fatalf("AddExplicit 4100 = %d, %v", p, err)
	}
	if p, err := tb.AddExplicit(protoTCP, ap(lanB, 8081), 6100, time.Hour); err != nil || p != 6100 {
		t.Fatalf("AddExplicit 6100 = %d, %v", p, err)
	}

	if err := tb.SetExternal(pub, portset.Range{First: 4096, Size: 1024}); err != nil {
		t.Fatal(err)
	}
	if st := tb.Stats(); tb.Sessions() != 1 || st.Mappings != 2 || st.Explicit != 1 {
		t.Fatalf("after shrinking the set: %d sessions, %+v; want the UDP flow on 4200 and the forward on 4100", tb.Sessions(), st)
	}
	// The kept flow: the answer comes in, the next packet leaves on 4200.
	mustIn(t, tb, udpPacket(ap(remote1, 53), ap(pub, 4200), nil))
	again := udpPacket(ap(lanA, 4200), ap(remote1, 53), nil)
	mustOut(t, tb, again)
	if srcOf(again) != ap(pub, 4200) {
		t.Fatalf("kept flow translated to %v", srcOf(again))
	}
	// The removed ones: nothing maps to 6000 or 6100 any more.
	if err := tb.Inbound(udpPacket(ap(remote1, 53), ap(pub, 6000), nil)); !errors.Is(err, ErrNoMapping) {
		t.Fatalf("inbound to the dropped port 6000: %v", err)
	}
	if _, err := tb.RemoveExplicit(protoTCP, ap(lanB, 8081)); err == nil {
		t.Fatal("the forward outside the new set is still there")
	}
	moved := udpPacket(ap(lanA, 6000), ap(remote1, 53), nil)
	mustOut(t, tb, moved)
	if p := srcOf(moved).Port(); p < 4096 || p >= 5120 {
		t.Fatalf("new flow translated to port %d, outside the new set", p)
	}
}
