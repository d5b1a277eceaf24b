package socks5

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// FuzzServeConn feeds arbitrary bytes to ServeConn as a client over
// net.Pipe, then half-closes (reads see EOF; replies still flow), with a
// Dialer that refuses everything. ServeConn must not panic and must return.
func FuzzServeConn(f *testing.F) {
	f.Add(append(greeting(), ipRequest(cmdConnect, netip.MustParseAddrPort("192.0.2.1:80"))...))
	f.Add(append(greeting(), nameRequest(cmdConnect, "example.test", 443)...))
	f.Add(append(greeting(), ipRequest(cmdUDPAssociate, netip.AddrPort{})...))
	f.Add(append(greeting(), ipRequest(cmdBind, netip.MustParseAddrPort("192.0.2.1:80"))...))
	f.Add(append(greeting(), ipRequest(cmdConnect, netip.MustParseAddrPort("[2001:db8::1]:80"))...))
	f.Add([]byte{5, 1, 2})
	f.Add([]byte{4, 1, 0, 80, 192, 0, 2, 1, 0})

	res := &fakeResolver{names: map[string][]netip.Addr{
		"example.test": {netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")},
	}}
	srv := &Server{Dialer: refusingDialer{}, Resolver: res}
	f.Cleanup(func() { srv.Close() })
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		defer client.Close()
		drained := make(chan struct{})
		go func() { io.Copy(io.Discard, client); close(drained) }()
		done := make(chan error, 1)
		go func() {
			done <- srv.ServeConn(context.Background(), &eofConn{Conn: server, n: len(in)})
		}()
		go client.Write(in) // ends when the server has read it all or closed
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("ServeConn(% x) did not return", in)
		}
		client.Close()
		<-drained
	})
}
