package socks5

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Wire constants of RFC 1928.
const (
	version5 = 0x05

	methodNoAuth       = 0x00
	methodNoAcceptable = 0xFF

	cmdConnect      = 0x01
	cmdBind         = 0x02
	cmdUDPAssociate = 0x03

	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04

	// maxUDPHeader is the longest SOCKS UDP request header the relay adds:
	// RSV(2) FRAG(1) ATYP(1) IPv6(16) PORT(2).
	maxUDPHeader = 22
)

// reply is an RFC 1928 §6 REP code.
type reply byte

const (
	repSucceeded           reply = 0x00
	repGeneralFailure      reply = 0x01
	repNotAllowed          reply = 0x02
	repNetworkUnreachable  reply = 0x03
	repHostUnreachable     reply = 0x04
	repConnectionRefused   reply = 0x05
	repTTLExpired          reply = 0x06
	repCommandNotSupported reply = 0x07
	repAddressNotSupported reply = 0x08
)

func (r reply) String() string {
	switch r {
	case repSucceeded:
		return "succeeded"
	case repGeneralFailure:
		return "general SOCKS server failure"
	case repNotAllowed:
		return "connection not allowed by ruleset"
	case repNetworkUnreachable:
		return "network unreachable"
	case repHostUnreachable:
		return "host unreachable"
	case repConnectionRefused:
		return "connection refused"
	case repTTLExpired:
		return "TTL expired"
	case repCommandNotSupported:
		return "command not supported"
	case repAddressNotSupported:
		return "address type not supported"
	}
	return "reply 0x" + strconv.FormatUint(uint64(r), 16)
}

// replyError is a request failure with the reply code sent for it.
type replyError struct {
	rep reply
	err error
}

func (e *replyError) Error() string {
	if e.err == nil {
		return "socks5: " + e.rep.String()
	}
	return "socks5: " + e.rep.String() + ": " + e.err.Error()
}

func (e *replyError) Unwrap() error { return e.err }

func failf(rep reply, err error) error { return &replyError{rep: rep, err: err} }

// Request parse errors.
var (
	errVersion     = errors.New("socks5: unsupported SOCKS version")
	errNoMethod    = errors.New("socks5: no acceptable authentication method")
	errAddrType    = errors.New("socks5: unknown address type")
	errEmptyName   = errors.New("socks5: empty domain name")
	errCommand     = errors.New("socks5: unsupported command")
	errNoResolver  = errors.New("socks5: domain names not supported (no resolver)")
	errIPv6        = errors.New("socks5: IPv6 destinations not supported")
	errNoAddress   = errors.New("socks5: name has no usable address")
	errNoDialer    = errors.New("socks5: no dialer")
	errNilConn     = errors.New("socks5: dialer returned no connection")
	errIdle        = errors.New("socks5: idle timeout")
	errShortUDP    = errors.New("socks5: short UDP request header")
	errNoHalfClose = errors.New("socks5: peer cannot half-close")
)

// address is a request's DST.ADDR and DST.PORT: an IP address or a name.
type address struct {
	ip   netip.Addr // valid for ATYP IPv4 and IPv6 (IPv4-mapped IPv6 unmapped)
	name string     // ATYP domain
	port uint16
}

func (a address) String() string {
	if a.name != "" {
		return net.JoinHostPort(a.name, strconv.Itoa(int(a.port)))
	}
	return netip.AddrPortFrom(a.ip, a.port).String()
}

// request is a parsed RFC 1928 §4 request.
type request struct {
	cmd byte
	dst address
}

// readAddress reads ADDR and PORT of type atyp from r. buf must hold 257
// bytes. Reads are bounded: at most 255+3 bytes.
func readAddress(r io.Reader, atyp byte, buf []byte) (address, error) {
	var a address
	switch atyp {
	case atypIPv4:
		b := buf[:4+2]
		if _, err := io.ReadFull(r, b); err != nil {
			return a, err
		}
		a.ip = netip.AddrFrom4([4]byte(b[:4]))
		a.port = binary.BigEndian.Uint16(b[4:])
	case atypIPv6:
		b := buf[:16+2]
		if _, err := io.ReadFull(r, b); err != nil {
			return a, err
		}
		a.ip = netip.AddrFrom16([16]byte(b[:16])).Unmap()
		a.port = binary.BigEndian.Uint16(b[16:])
	case atypDomain:
		if _, err := io.ReadFull(r, buf[:1]); err != nil {
			return a, err
		}
		n := int(buf[0])
		b := buf[:n+2]
		if _, err := io.ReadFull(r, b); err != nil {
			return a, err
		}
		if n == 0 {
			return a, errEmptyName
		}
		a.name = string(b[:n])
		a.port = binary.BigEndian.Uint16(b[n:])
	default:
		return a, errAddrType
	}
	return a, nil
}

// parseUDPHeader splits a client datagram (RFC 1928 §7) into its FRAG
// field, destination and payload.
func parseUDPHeader(b []byte) (frag byte, dst address, payload []byte, err error) {
	if len(b) < 4 {
		return 0, dst, nil, errShortUDP
	}
	frag = b[2]
	atyp := b[3]
	b = b[4:]
	switch atyp {
	case atypIPv4:
		if len(b) < 4+2 {
			return frag, dst, nil, errShortUDP
		}
		dst.ip = netip.AddrFrom4([4]byte(b[:4]))
		dst.port = binary.BigEndian.Uint16(b[4:])
		b = b[6:]
	case atypIPv6:
		if len(b) < 16+2 {
			return frag, dst, nil, errShortUDP
		}
		dst.ip = netip.AddrFrom16([16]byte(b[:16])).Unmap()
		dst.port = binary.BigEndian.Uint16(b[16:])
		b = b[18:]
	case atypDomain:
		if len(b) < 1 {
			return frag, dst, nil, errShortUDP
		}
		n := int(b[0])
		if n == 0 {
			return frag, dst, nil, errEmptyName
		}
		if len(b) < 1+n+2 {
			return frag, dst, nil, errShortUDP
		}
		dst.name = string(b[1 : 1+n])
		dst.port = binary.BigEndian.Uint16(b[1+n:])
		b = b[1+n+2:]
	default:
		return frag, dst, nil, errAddrType
	}
	return frag, dst, b, nil
}

// appendAddrPort appends ATYP, ADDR and PORT for ap: IPv4 (also for
// IPv4-mapped IPv6 and for an invalid ap, as 0.0.0.0:0) or IPv6.
func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr().Unmap()
	switch {
	case a.Is4():
		v := a.As4()
		b = append(b, atypIPv4)
		b = append(b, v[:]...)
	case a.Is6():
		v := a.As16()
		b = append(b, atypIPv6)
		b = append(b, v[:]...)
	default:
		b = append(b, atypIPv4, 0, 0, 0, 0)
	}
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

// udpHeaderLen is the length of the header appendAddrPort writes for ap,
// with RSV and FRAG.
func udpHeaderLen(ap netip.AddrPort) int {
	if a := ap.Addr().Unmap(); a.Is6() {
		return 4 + 16 + 2
	}
	return 4 + 4 + 2
}

// addrPortOf converts a net.Addr from a net.Conn or net.PacketConn to a
// netip.AddrPort with IPv4-mapped addresses unmapped; invalid if a is not an
// IP address.
func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case nil:
		return ap
	case *net.TCPAddr:
		if a == nil {
			return ap
		}
		ap = a.AddrPort()
	case *net.UDPAddr:
		if a == nil {
			return ap
		}
		ap = a.AddrPort()
	default:
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return netip.AddrPort{}
		}
	}
	if !ap.Addr().IsValid() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func addrString(a net.Addr) string {
	if a == nil {
		return "?"
	}
	return a.String()
}

// replyFor maps a dial error to a reply code. It understands errno values
// from the net package and the messages of gVisor's gonet adapter, which
// flattens tcpip errors into strings.
func replyFor(err error) reply {
	if err == nil {
		return repSucceeded
	}
	var re *replyError
	if errors.As(err, &re) {
		return re.rep
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return repConnectionRefused
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.ENETDOWN):
		return repNetworkUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.EHOSTDOWN):
		return repHostUnreachable
	case errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, context.DeadlineExceeded):
		return repTTLExpired
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return repNotAllowed
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return repHostUnreachable
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "connection was refused"), // gVisor
		strings.Contains(msg, "connection refused"):
		return repConnectionRefused
	case strings.Contains(msg, "network is unreachable"),
		strings.Contains(msg, "machine is not on the network"):
		return repNetworkUnreachable
	case strings.Contains(msg, "no route to host"),
		strings.Contains(msg, "host is down"),
		strings.Contains(msg, "host is unreachable"):
		return repHostUnreachable
	case strings.Contains(msg, "timed out"):
		return repTTLExpired
	case strings.Contains(msg, "operation not permitted"):
		return repNotAllowed
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return repTTLExpired
	}
	return repGeneralFailure
}
