// Command embed shows the embedding API (package b4/embed): a Go program
// with a B4 of its own, no TUN, no privileges.
//
// By default it is self-contained: it starts an AFTR in the process
// (internal/localaftr) and an HTTP server on 127.0.0.1, fetches a page from
// that server through the B4, then listens on a port the B4 maps publicly,
// prints the public address and fetches a page from it as a host on the
// AFTR's Internet side would.
//
//	go run ./examples/embed
//
// With -underlay it talks to a running lw4o6-aftr over the UDP underlay
// instead (as examples/laptop-lab runs one, with --egress-allow-loopback to
// reach a server on this machine) and fetches -url:
//
//	go run ./examples/embed -underlay 127.0.0.1:4789 -aftr 2001:db8::1 -url http://127.0.0.1:8000/
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"time"

	"github.com/lw4o6/lw4o6/b4"
	"github.com/lw4o6/lw4o6/b4/embed"
	"github.com/lw4o6/lw4o6/internal/localaftr"
	"github.com/lw4o6/lw4o6/tun"
	"github.com/lw4o6/lw4o6/tun/udpunder"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("embed", flag.ContinueOnError)
	underlay := fs.String("underlay", "", "UDP underlay address of a running lw4o6-aftr (empty: an AFTR in this process)")
	aftrAddr := fs.String("aftr", localaftr.Addr.String(), "the AFTR's IPv6 address")
	b4Addr := fs.String("b4", "2001:db8:b4::2", "this B4's IPv6 address")
	url := fs.String("url", "", "page to fetch through the B4 (empty: from an HTTP server this program starts on 127.0.0.1)")
	port := fs.Int("port", 8080, "LAN port to listen on and map publicly")
	serve := fs.Bool("serve", false, "keep serving on the mapped port until interrupted")
	verbose := fs.Bool("v", false, "log the B4's debug messages")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	cfg := b4.DefaultConfig()
	var err error
	if cfg.Addr, err = netip.ParseAddr(*b4Addr); err != nil {
		return fmt.Errorf("-b4: %w", err)
	}
	if cfg.AFTR, err = netip.ParseAddr(*aftrAddr); err != nil {
		return fmt.Errorf("-aftr: %w", err)
	}
	cfg.AllowLoopback = true // the HTTP server is on this machine's loopback

	var access tun.Device
	var la *localaftr.AFTR
	if *underlay == "" {
		if la, err = localaftr.Start(log); err != nil {
			return err
		}
		defer la.Close()
		access = la.Access
	} else if access, err = udpunder.NewClient(":0", *underlay); err != nil {
		return err
	}

	// The B4, provisioned by PCP through its softwire.
	node, err := embed.New(embed.Config{B4: cfg, Access: access, Logger: log})
	if err != nil {
		access.Close()
		return err
	}
	defer node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := node.Start(ctx); err != nil {
		return err
	}
	st := node.Status()
	fmt.Fprintf(out, "B4 %v provisioned: public IPv4 %v, ports %v\n", cfg.Addr, st.PublicIPv4, st.Ports)

	// Outbound: an HTTP client whose connections leave through the B4.
	if *url == "" {
		srv, u, err := startServer("hello from 127.0.0.1\n")
		if err != nil {
			return err
		}
		defer srv.Close()
		*url = u
	}
	client := &http.Client{Transport: &http.Transport{DialContext: node.DialContext}, Timeout: 30 * time.Second}
	body, err := get(client, *url)
	if err != nil {
		return fmt.Errorf("GET %s through the B4: %w", *url, err)
	}
	fmt.Fprintf(out, "GET %s through the B4: %q\n", *url, body)

	// Inbound: a listener on the LAN host, its port mapped in the B4's set.
	ln, err := node.Listen("tcp", fmt.Sprintf(":%d", *port))
	if err != nil {
		return err
	}
	pub := ln.PublicAddr()
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the embedded B4's listener, %s\n", r.RemoteAddr)
	})}
	go hs.Serve(ln)
	defer hs.Close()
	fmt.Fprintf(out, "listening on %v, reachable from the Internet at %v\n", ln.Addr(), pub)

	if la != nil {
		// From a host on the AFTR's Internet side.
		inet := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return la.InternetHost.DialTCP(ctx, pub)
		}}, Timeout: 30 * time.Second}
		body, err := get(inet, "http://"+pub.String()+"/")
		if err != nil {
			return fmt.Errorf("GET %v from the Internet: %w", pub, err)
		}
		fmt.Fprintf(out, "GET http://%v/ from %v: %q\n", pub, localaftr.InternetHostAddr, body)
	}
	if *serve {
		sig, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		<-sig.Done()
	}
	return nil
}

// startServer serves body on a loopback port and returns its URL.
func startServer(body string) (*http.Server, string, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body) })}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "embed: HTTP server:", err)
		}
	}()
	return srv, "http://" + ln.Addr().String() + "/", nil
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return string(b), nil
}
