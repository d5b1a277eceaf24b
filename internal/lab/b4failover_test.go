package lab

import (
	"encoding/binary"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/aftr"
	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/b4"
	"github.com/lw4o6/lw4o6/stack/portset"
)

// Issue 11 item 3: a TCP flow survives the AFTR losing the B4's binding in
// mid-transfer. The B4's ACKs draw an ICMPv6 1/5; the B4 asks again for its
// previous address and set, the AFTR gives them back, and the NAT, which
// kept the sessions whose port the set still holds, carries the flow on
// (before, the NAT was flushed and the flow died).
func TestTCPFlowSurvivesReprovisioning(t *testing.T) {
	w := newWorld(t, Config{B4s: 1, PortsPerB4: 4096})
	ctx := testCtx(t)
	n := w.Nodes[0]
	before := n.B4.Status()
	c, err := n.Host.DialTCP(ctx, netip.AddrPortFrom(ServerAddr, TCPPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	const total = 8 << 20
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], total)
	if _, err := c.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, c, 1<<20); err != nil {
		t.Fatalf("first MiB: %v", err)
	}
	if !w.AFTR.RemoveBinding(n.Addr) {
		t.Fatal("no binding to remove")
	}
	// A receiver whose data stops sends nothing: keep the B4 busy with
	// another flow (UDP to the echo service), so that its packets draw the
	// 1/5. An idle B4 is ANNOUNCE's case.
	u, err := n.Host.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(ServerAddr, UDPPort))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				u.Write([]byte("busy"))
			}
		}
	}()
	got, err := io.Copy(io.Discard, c)
	if err != nil || got != total-1<<20 {
		t.Fatalf("after the binding was removed: %d of %d octets, %v", got, total-1<<20, err)
	}
	st := n.B4.Status()
	if st.Provisionings < 2 || st.Counters["in-icmpv6-no-binding-packets"] == 0 {
		t.Fatalf("provisionings %d, 1/5 received %d: the binding was never lost and regained",
			st.Provisionings, st.Counters["in-icmpv6-no-binding-packets"])
	}
	if st.PublicIPv4 != before.PublicIPv4 || st.Ports != before.Ports {
		t.Fatalf("re-provisioned into %v %v, before %v %v", st.PublicIPv4, st.Ports, before.PublicIPv4, before.Ports)
	}
}

// Issue 7 item 4: a B4 whose binding a provisioning system installed (here
// a static AFTR binding) comes online with --ipv4/--port-set and no PCP.
func TestStaticB4(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.2")
	set := portset.Range{First: 8192, Size: 4096}
	psid, err := portset.NewPSID(0, 4, 2) // 2 << 12 = 8192, 4096 ports
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, Config{
		B4s: 1, PortsPerB4: 4096,
		AFTR: func(c *aftr.Config) {
			c.Static = []bindings.Binding{{B4: B4Addr(0), IPv4: ip, PSID: psid}}
		},
		B4: func(i int, c *b4.Config) { c.StaticIPv4, c.StaticPorts = ip, set },
	})
	ctx := testCtx(t)
	r := w.Exchange(ctx, 0, 64<<10)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if r.TCPLocal.Addr() != LANHostAddr(0) {
		t.Fatalf("TCP from %v", r.TCPLocal)
	}
	seen := w.Server.Seen()
	if len(seen) == 0 || seen[0].Remote.Addr() != ip || !set.Contains(seen[0].Remote.Port()) {
		t.Fatalf("server saw %+v, want %v in %v", seen, ip, set)
	}
	if p := w.AFTR.Counters()["in-pcp-packets"]; p != 0 {
		t.Fatalf("a static B4 spoke PCP: in-pcp %d", p)
	}
}
