package aftr

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/aftr/journal"
	"github.com/lw4o6/lw4o6/stack/portset"
)

var tBenchPool = netip.MustParsePrefix("198.18.0.0/15") // RFC 2544; 4 M blocks of 2048 ports

// answerLink hands each PCP answer to the requester waiting for it: the
// worker number is in octets 4-5 of the B4 address the answer goes to.
type answerLink struct{ workers []chan struct{} }

func (l *answerLink) Send(pkt []byte) {
	w := int(pkt[24+4])<<8 | int(pkt[24+5]) // IPv6 destination, octets 4-5
	l.workers[w] <- struct{}{}
}

// BenchmarkJournaledAllocate: PCP MAP allocations for new B4s through the
// AFTR (FromAccess → PCP server → pool → journal), each requester waiting
// for its answer before the next request, so every op is an answered,
// durable allocation. With -cpu 1, 256 requesters share one core; group
// commit turns their records into one write and one fsync per batch.
func BenchmarkJournaledAllocate(b *testing.B) {
	for _, bc := range []struct {
		name    string
		journal bool
	}{{"journal", true}, {"none", false}} {
		b.Run(bc.name, func(b *testing.B) {
			const requesters = 256
			link := &answerLink{}
			for range requesters * 64 { // RunParallel runs requesters × GOMAXPROCS
				link.workers = append(link.workers, make(chan struct{}, 1))
			}
			cfg := testConfig()
			cfg.Pools = []netip.Prefix{tBenchPool}
			if bc.journal {
				cfg.StateDir = b.TempDir()
			}
			a, err := New(cfg, link, discard{})
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			tmpl := pcpPacket(tB4A, b4Req(1, 3600).marshal(b))
			var ids atomic.Int64
			var seq atomic.Uint32
			b.SetParallelism(requesters)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				w := int(ids.Add(1) - 1)
				buf := make([]byte, len(tmpl))
				for pb.Next() {
					copy(buf, tmpl)
					// A new B4 per request: 2001:db8:<worker>:<n>::1.
					n := seq.Add(1)
					src := buf[8:24]
					src[4], src[5] = byte(w>>8), byte(w)
					src[6], src[7], src[8], src[9] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
					a.FromAccess(buf)
					<-link.workers[w]
				}
			})
			b.StopTimer()
			if got := a.count.Packets(cOutPCP); got != uint64(b.N) {
				b.Fatalf("%d answers for %d requests: %v", got, b.N, a.Counters())
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "allocs/s")
			if a.journal != nil {
				st := a.journal.Stats()
				b.ReportMetric(float64(st.Records)/float64(max(st.Batches, 1)), "records/fsync")
			}
		})
	}
}

// BenchmarkReplay1M: New on a StateDir whose journal holds 1 M live
// bindings: read and check every record, rebuild the binding table and
// the nonces, continue the Epoch.
func BenchmarkReplay1M(b *testing.B) {
	const n = 1 << 20
	dir := b.TempDir()
	now := time.Now()
	j, _, err := journal.Open(journal.Config{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	base := tBenchPool.Addr().As4()
	for i := range n {
		ip := base
		addr := uint32(ip[2])<<8 | uint32(ip[3]) + uint32(i/31)
		ip[1] += byte(addr >> 16)
		ip[2], ip[3] = byte(addr>>8), byte(addr)
		rec := journal.Record{Kind: journal.KindPut, Binding: bindings.Binding{
			B4:      burstB4i(i),
			IPv4:    netip.AddrFrom4(ip),
			PSID:    portset.PSID{Length: 5, ID: uint16(i%31 + 1)},
			BR:      tAFTR,
			Expires: now.Add(time.Hour),
		}, Nonce: [12]byte{byte(i), byte(i >> 8), byte(i >> 16)}}
		for {
			err := j.Append(rec, nil)
			if err == nil {
				break
			}
			if err != journal.ErrFull {
				b.Fatal(err)
			}
			j.Sync()
		}
	}
	j.Append(journal.Record{Kind: journal.KindEpoch, Time: now}, nil)
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	cfg := testConfig()
	cfg.Pools = []netip.Prefix{tBenchPool}
	cfg.StateDir = dir
	b.ResetTimer()
	for range b.N {
		a, err := New(cfg, discard{}, discard{})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if got := a.table.Len(); got != n || !a.Restored() {
			b.Fatalf("%d bindings restored (Restored %v), want %d", got, a.Restored(), n)
		}
		a.Close()
		b.StartTimer()
	}
}

// burstB4i is B4 number i of up to 2^32.
func burstB4i(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i), 0, 0, 0, 0, 0, 1})
}
