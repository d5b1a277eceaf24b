package lab

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/lw4o6/lw4o6/stack/sim"
)

// Service ports of the Internet host.
const (
	TCPPort = 80
	UDPPort = 7
	// TCPEchoPort echoes whatever a TCP client sends (long-lived flows).
	TCPEchoPort = 7
)

// Server is the Internet host: a TCP service that sends back as many bytes
// as the client asks for, a UDP echo, and (gVisor's own) ping replies. It
// records the source address and port of every flow it sees, so tests can
// check that they are a B4's public address and ports in its set.
type Server struct {
	*sim.Host
	log *slog.Logger
	ln  net.Listener
	eln net.Listener // TCP echo
	uc  net.PacketConn
	wg  sync.WaitGroup

	mu     sync.Mutex
	seen   []Seen
	unseen uint64
	closed bool
	// conns are the open TCP connections (transfers and echoes), closed
	// by Close; each leaves as it ends, so that a long run of short
	// connections (the soak test) does not keep them all.
	conns map[net.Conn]struct{}
}

// Seen is one flow as the Internet host saw it.
type Seen struct {
	Proto  string // "tcp" or "udp"
	Remote netip.AddrPort
	Bytes  int
}

// NewServer attaches the Internet host at addr and starts its services.
func NewServer(n *sim.Network, addr netip.Addr, log *slog.Logger) (*Server, error) {
	h, err := sim.NewHost(n, "server", 1500, log, netip.PrefixFrom(addr, 24))
	if err != nil {
		return nil, err
	}
	s := &Server{Host: h, log: log}
	ln, err := h.ListenTCP(netip.AddrPortFrom(addr, TCPPort))
	if err != nil {
		h.Close()
		return nil, err
	}
	eln, err := h.ListenTCP(netip.AddrPortFrom(addr, TCPEchoPort))
	if err != nil {
		ln.Close()
		h.Close()
		return nil, err
	}
	uc, err := h.DialUDP(netip.AddrPortFrom(addr, UDPPort), netip.AddrPort{})
	if err != nil {
		ln.Close()
		eln.Close()
		h.Close()
		return nil, err
	}
	s.ln, s.eln, s.uc = ln, eln, uc
	s.wg.Add(3)
	go s.serveTCP()
	go s.serveTCPEcho()
	go s.serveUDP()
	return s, nil
}

// serveTCP answers each connection: the client sends an 8-octet count n,
// the server sends n octets and closes.
func (s *Server) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		if !s.track(c) {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			var hdr [8]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			n := int(binary.BigEndian.Uint64(hdr[:]))
			if n > 1<<30 {
				return
			}
			written := 0
			for written < n {
				k, err := c.Write(zeros[:min(n-written, len(zeros))])
				written += k
				if err != nil {
					break
				}
			}
			s.record("tcp", c.RemoteAddr(), written)
		}()
	}
}

// serveTCPEcho echoes each connection until the client closes it (or the
// server stops: Close closes the connections it is serving).
func (s *Server) serveTCPEcho() {
	defer s.wg.Done()
	for {
		c, err := s.eln.Accept()
		if err != nil {
			return
		}
		if !s.track(c) {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			n, _ := io.Copy(c, c)
			s.record("tcp", c.RemoteAddr(), int(n))
		}()
	}
}

func (s *Server) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := s.uc.ReadFrom(buf)
		if err != nil {
			return
		}
		s.record("udp", from, n)
		s.uc.WriteTo(buf[:n], from)
	}
}

// track adds an accepted connection to those Close closes; false (and c
// closed) when the server is closing.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	s.conns[c] = struct{}{}
	return true
}

// untrack closes a connection that has ended and forgets it.
func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// OpenConns is the number of TCP connections the server holds open.
func (s *Server) OpenConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Server) record(proto string, a net.Addr, n int) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	}
	s.mu.Lock()
	if len(s.seen) < maxSeen {
		s.seen = append(s.seen, Seen{Proto: proto, Remote: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), Bytes: n})
	} else {
		s.unseen++
	}
	s.mu.Unlock()
}

// maxSeen bounds the flows Seen keeps (a long run sends millions of
// datagrams); later ones are only counted (Unseen).
const maxSeen = 1 << 16

// Unseen is the number of flows not kept once Seen held maxSeen.
func (s *Server) Unseen() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unseen
}

// Seen returns the flows recorded so far (the first maxSeen).
func (s *Server) Seen() []Seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Seen(nil), s.seen...)
}

// Close stops the services and the host.
func (s *Server) Close() {
	s.ln.Close()
	s.eln.Close()
	s.uc.Close()
	// A transfer to a client that is gone (a failed test) would block its
	// write, and Close, for ever.
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.Host.Close()
}

// zeros is what the TCP service sends, one buffer for every connection: a
// gVisor TCP endpoint keeps a reference to the last buffer written to it
// (tcp.Endpoint's cached io.LimitedReader) until it is freed, 60 s after
// the close (TIME_WAIT), so a buffer per connection (io.CopyN's) kept
// 32 KiB per connection closed in the last minute.
var zeros = make([]byte, 32<<10)

var errShort = errors.New("lab: short transfer")
