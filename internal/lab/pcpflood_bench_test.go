package lab

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/aftr"
	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
)

// BenchmarkTCPThroughLabPCPFlood is BenchmarkTCPThroughLab while a B4
// elsewhere on the access network sends 200 000 PCP MAPs a second through
// its softwire (issue 11 item 6), with the AFTR's default PCP rate limits
// (aftr/pcplimit.go) and without. MB/s is the other B4's TCP goodput.
func BenchmarkTCPThroughLabPCPFlood(b *testing.B) {
	for _, c := range []struct {
		name string
		edit func(*aftr.Config)
	}{
		{"limits", nil},
		{"nolimits", func(c *aftr.Config) { c.PCPRate, c.PCPRatePerB4 = 0, 0 }},
	} {
		b.Run(c.name, func(b *testing.B) {
			w, err := New(Config{B4s: 1, Pool: netip.MustParsePrefix("192.0.2.0/30"), PortsPerB4: 4096, AFTR: c.edit})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			if err := w.WaitProvisioned(ctx); err != nil {
				b.Fatal(err)
			}
			stop := floodPCP(b, w, 200000)
			defer stop()
			const n = 16 << 20
			b.SetBytes(n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var r Result
				if err := w.TCP(ctx, 0, n, &r); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			answers := stop()
			b.ReportMetric(float64(answers), "pcp-answers")
		})
	}
}

// floodPCP sends perSecond PCP MAPs from a B4 of its own /64 to the AFTR,
// paced in batches every millisecond; stop ends it and returns how many
// answers came back.
func floodPCP(b *testing.B, w *World, perSecond int) (stop func() int) {
	b.Helper()
	src := netip.MustParseAddr("2001:db8:f100::1")
	var answers atomic.Int64
	port, err := w.Access.Attach("flooder", func([]byte) { answers.Add(1) }, netip.PrefixFrom(src, 64))
	if err != nil {
		b.Fatal(err)
	}
	req, err := pcp.Marshal(&pcp.Message{
		Opcode: pcp.OpMap, Lifetime: 3600, ClientIP: netip.MustParseAddr("192.0.0.2"),
		Map:     &pcp.MapData{Nonce: [pcp.NonceLen]byte{1, 2, 3}, ExternalIP: netip.IPv4Unspecified()},
		Options: []pcp.Option{pcp.PortSetOption(pcp.PortSet{Size: 65535})},
	})
	if err != nil {
		b.Fatal(err)
	}
	ip4 := packet.AppendUDP4(nil, 0, [4]byte{192, 0, 0, 2}, [4]byte{192, 0, 0, 1}, 40000, pcp.ServerPort, 64, req)
	pkt := packet.Encapsulate(ip4, 0, src.As16(), AFTRAddr.As16(), 64)
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for range perSecond / 1000 {
					port.Send(pkt)
				}
			}
		}
	}()
	var stopped bool
	return func() int {
		if !stopped {
			stopped = true
			close(done)
			<-finished
		}
		return int(answers.Load())
	}
}
