package nat

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// BenchmarkOutboundUDP translates a datagram of an existing session (the
// steady state: two map lookups, a timer refresh, an in-place rewrite).
func BenchmarkOutboundUDP(b *testing.B) {
	tb := New(Config{})
	if err := tb.SetExternal(pub, testSet); err != nil {
		b.Fatal(err)
	}
	tmpl := udpPacket(ap(lanA, 40000), ap(remote1, 53), make([]byte, 64))
	buf := clone(tmpl)
	if _, err := tb.Outbound(buf); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(tmpl)))
	for b.Loop() {
		copy(buf, tmpl)
		if _, err := tb.Outbound(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInboundTCP translates a segment of an established connection.
func BenchmarkInboundTCP(b *testing.B) {
	tb := New(Config{Filtering: AddressAndPortDependent})
	if err := tb.SetExternal(pub, testSet); err != nil {
		b.Fatal(err)
	}
	syn := tcpPacket(ap(lanA, 50000), ap(remote1, 443), header.TCPFlagSyn, nil)
	if _, err := tb.Outbound(syn); err != nil {
		b.Fatal(err)
	}
	ext := srcOf(syn).Port()
	if err := tb.Inbound(tcpPacket(ap(remote1, 443), ap(pub, ext), header.TCPFlagSyn|header.TCPFlagAck, nil)); err != nil {
		b.Fatal(err)
	}
	tmpl := tcpPacket(ap(remote1, 443), ap(pub, ext), header.TCPFlagAck, make([]byte, 1400))
	buf := clone(tmpl)
	b.ReportAllocs()
	b.SetBytes(int64(len(tmpl)))
	for b.Loop() {
		copy(buf, tmpl)
		if err := tb.Inbound(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOutboundUDPParallel shows the cost of the single mutex under
// contention: one flow per goroutine.
func BenchmarkOutboundUDPParallel(b *testing.B) {
	tb := New(Config{})
	if err := tb.SetExternal(pub, testSet); err != nil {
		b.Fatal(err)
	}
	var port uint16 = 30000
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		tb.mu.Lock()
		port++
		p := port
		tb.mu.Unlock()
		tmpl := udpPacket(ap(lanA, p), ap(remote1, 53), make([]byte, 64))
		buf := clone(tmpl)
		for pb.Next() {
			copy(buf, tmpl)
			if _, err := tb.Outbound(buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkOutboundNewSessions opens a session to a new remote port each
// time (mapping reused, session created), recycling them via Flush.
func BenchmarkOutboundNewSessions(b *testing.B) {
	tb := New(Config{MaxSessions: 1 << 20})
	if err := tb.SetExternal(pub, testSet); err != nil {
		b.Fatal(err)
	}
	tmpl := udpPacket(ap(lanA, 40000), ap(remote1, 0), nil)
	buf := clone(tmpl)
	var i int
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, tmpl)
		i++
		buf[22], buf[23] = byte(i>>8), byte(i)
		if i&0xffff == 0 {
			tb.Flush()
		}
		if _, err := tb.Outbound(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOutboundNewSessionsQuota is OutboundNewSessions with the
// per-host quotas on (high enough never to refuse): the cost of the quota
// checks on the new-session path.
func BenchmarkOutboundNewSessionsQuota(b *testing.B) {
	tb := New(Config{MaxSessions: 1 << 20, HostPortShare: DefaultHostPortShare, HostSessions: 1 << 20})
	if err := tb.SetExternal(pub, testSet); err != nil {
		b.Fatal(err)
	}
	tmpl := udpPacket(ap(lanA, 40000), ap(remote1, 0), nil)
	buf := clone(tmpl)
	var i int
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, tmpl)
		i++
		buf[22], buf[23] = byte(i>>8), byte(i)
		if i&0xffff == 0 {
			tb.Flush()
		}
		if _, err := tb.Outbound(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOutboundHostQuotaRefused is a LAN host at its port quota
// opening a new flow with every packet: each is refused (ErrHostQuota),
// the table walk it may trigger at most once a second included.
func BenchmarkOutboundHostQuotaRefused(b *testing.B) {
	tb := New(Config{HostPortShare: DefaultHostPortShare})
	if err := tb.SetExternal(pub, testSet); err != nil {
		b.Fatal(err)
	}
	q := tb.Stats().HostPortQuota
	for i := range q {
		if _, err := tb.Outbound(udpPacket(ap(lanA, uint16(20000+i)), ap(remote1, 53), nil)); err != nil {
			b.Fatal(err)
		}
	}
	tmpl := udpPacket(ap(lanA, 40000), ap(remote1, 53), nil)
	buf := clone(tmpl)
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, tmpl)
		if _, err := tb.Outbound(buf); err != ErrHostQuota {
			b.Fatal(err)
		}
	}
}
