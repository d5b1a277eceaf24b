package egress

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkTCPThroughput moves a stream through the egress between a gVisor
// B4-side host and a loopback socket: both stacks, the softwire pipe and the
// host relay are in the measurement.
func BenchmarkTCPThroughput(b *testing.B) {
	const chunk = 64 << 10
	for _, dir := range []string{"upload", "download"} {
		b.Run(dir, func(b *testing.B) {
			h := newHarness(b, Config{})
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			total := int64(b.N) * chunk
			srv := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					srv <- err
					return
				}
				defer c.Close()
				if dir == "upload" {
					_, err = io.Copy(io.Discard, c)
				} else {
					_, err = io.CopyN(c, zeros{}, total)
				}
				srv <- err
			}()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, err := h.host.DialTCP(ctx, netip.AddrPortFrom(farAddr, uint16(ln.Addr().(*net.TCPAddr).Port)))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.SetBytes(chunk)
			b.ResetTimer()
			if dir == "upload" {
				buf := make([]byte, chunk)
				for range b.N {
					if _, err := c.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				c.CloseWrite()
			} else if n, err := io.Copy(io.Discard, c); err != nil || n != total {
				b.Fatalf("read %d of %d: %v", n, total, err)
			}
			if err := <-srv; err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
		})
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}
