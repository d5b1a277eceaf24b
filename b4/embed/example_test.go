package embed_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/lw4o6/lw4o6/b4"
	"github.com/lw4o6/lw4o6/b4/embed"
	"github.com/lw4o6/lw4o6/internal/localaftr"
)

// A program embeds a B4, dials a server through it and listens on a port
// the B4 maps publicly. The AFTR here runs in the process, on the other end
// of an in-memory access link; a real program gives Config.Access a
// tun/udpunder client or a tun/rawip6 socket instead.
func Example() {
	aftr, err := localaftr.Start(nil)
	if err != nil {
		panic(err)
	}
	defer aftr.Close()

	cfg := b4.DefaultConfig()
	cfg.Addr, cfg.AFTR = netip.MustParseAddr("2001:db8:b4::2"), localaftr.Addr
	cfg.AllowLoopback = true // the server below is on loopback
	node, err := embed.New(embed.Config{B4: cfg, Access: aftr.Access})
	if err != nil {
		panic(err)
	}
	defer node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := node.Start(ctx); err != nil { // provisioned by PCP
		panic(err)
	}
	fmt.Println("provisioned:", node.Status().Provisioned)

	// Outbound: to a server on 127.0.0.1, through the softwire.
	srv, _ := net.Listen("tcp4", "127.0.0.1:0")
	defer srv.Close()
	go func() {
		c, err := srv.Accept()
		if err == nil {
			io.WriteString(c, "hello\n")
			c.Close()
		}
	}()
	c, err := node.DialContext(ctx, "tcp", srv.Addr().String())
	if err != nil {
		panic(err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	fmt.Printf("read %q\n", b)

	// Inbound: a listener whose port is mapped in the B4's port set.
	ln, err := node.Listen("tcp", ":8080")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	pub := ln.PublicAddr() // e.g. 192.0.2.0:2634
	fmt.Println("public address in the pool:", localaftr.Pool.Contains(pub.Addr()))
	// Output:
	// provisioned: true
	// read "hello\n"
	// public address in the pool: true
}
