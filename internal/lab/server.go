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

	mu        sync.Mutex
	seen      []Seen
	echoConns []net.Conn
	closed    bool
	conns     map[net.Conn]struct{} // open TCP transfers, closed by Close
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
		s.mu.Lock()
		if s.conns == nil {
			s.conns = make(map[net.Conn]struct{})
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			var hdr [8]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			n := int(binary.BigEndian.Uint64(hdr[:]))
			if n > 1<<30 {
				return
			}
			written, _ := io.CopyN(c, zeroReader{}, int64(n))
			s.record("tcp", c.RemoteAddr(), int(written))
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
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.echoConns = append(s.echoConns, c)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
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

func (s *Server) record(proto string, a net.Addr, n int) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	}
	s.mu.Lock()
	s.seen = append(s.seen, Seen{Proto: proto, Remote: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), Bytes: n})
	s.mu.Unlock()
}

// Seen returns every flow recorded so far.
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
	for _, c := range s.echoConns {
		c.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.Host.Close()
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

var errShort = errors.New("lab: short transfer")
