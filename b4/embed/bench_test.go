package embed_test

import (
	"context"
	"io"
	"net"
	"testing"
)

// BenchmarkDownloadTCP: a loopback server sends b.N × 64 KiB to a
// connection dialled through the embedded B4 and the in-process AFTR (two
// gVisor stacks, the softwire, the AFTR's host egress).
func BenchmarkDownloadTCP(b *testing.B) {
	n, _ := startB(b)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	chunk := make([]byte, 64<<10)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for i := 0; i < b.N; i++ {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	c, err := n.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	if k, err := io.Copy(io.Discard, c); err != nil || k != int64(b.N*len(chunk)) {
		b.Fatalf("read %d of %d: %v", k, b.N*len(chunk), err)
	}
}
