package dhcp6

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Resolver resolves the AFTR's name to an IPv6 address (RFC 6334 §4: an
// AAAA query; of several addresses, one is used).
type Resolver struct {
	// Servers are the DNS servers to ask, in order (OPTION_DNS_SERVERS,
	// port 53). Empty means the system resolver.
	Servers []netip.AddrPort
	// Timeout bounds the wait for each server's answer; zero means 2 s.
	Timeout time.Duration
	// Tries is how many rounds over Servers; zero means 2.
	Tries int
	// SystemTTL is how long an address from the system resolver, whose
	// TTL is not known, is used before asking again; zero means 1 h.
	SystemTTL time.Duration
}

// TTL bounds on an answer: re-resolve at the record's TTL, but neither
// more often than MinTTL nor less often than MaxTTL.
const (
	MinTTL = 30 * time.Second
	MaxTTL = 24 * time.Hour
)

// minTTL is MinTTL; tests shorten it.
var minTTL = MinTTL

// ErrResolve wraps every resolution failure.
var ErrResolve = errors.New("dhcp6: AFTR name not resolved")

// ResolveAAAA returns the first AAAA address of name and how long it may
// be used (the record's TTL, bounded by MinTTL and MaxTTL).
func (r *Resolver) ResolveAAAA(ctx context.Context, name string) (netip.Addr, time.Duration, error) {
	if len(r.Servers) == 0 {
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip6", name)
		for _, a := range addrs {
			if a.Is6() && !a.Is4In6() {
				return a, or(r.SystemTTL, time.Hour), nil
			}
		}
		return netip.Addr{}, 0, fmt.Errorf("%w: %s: system resolver: no AAAA record (%v)", ErrResolve, name, err)
	}
	var errs []error
	for range max(r.Tries, 2) {
		for _, s := range r.Servers {
			a, ttl, err := r.query(ctx, s, name)
			if err == nil {
				return a, ttl, nil
			}
			if ctx.Err() != nil {
				return netip.Addr{}, 0, fmt.Errorf("%w: %s: %w", ErrResolve, name, ctx.Err())
			}
			errs = append(errs, err)
		}
	}
	return netip.Addr{}, 0, fmt.Errorf("%w: %s: %w", ErrResolve, name, errors.Join(errs...))
}

// query sends one AAAA query over UDP to server and waits a bounded time.
func (r *Resolver) query(ctx context.Context, server netip.AddrPort, name string) (netip.Addr, time.Duration, error) {
	qname, err := dnsmessage.NewName(strings.TrimSuffix(name, ".") + ".")
	if err != nil {
		return netip.Addr{}, 0, err
	}
	var idb [2]byte
	rand.Read(idb[:])
	id := binary.BigEndian.Uint16(idb[:])
	q := dnsmessage.Question{Name: qname, Type: dnsmessage.TypeAAAA, Class: dnsmessage.ClassINET}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	b.StartQuestions()
	b.Question(q)
	pkt, err := b.Finish()
	if err != nil {
		return netip.Addr{}, 0, err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", server.String())
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("DNS server %v: %w", server, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(or(r.Timeout, 2*time.Second)))
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.Write(pkt); err != nil {
		return netip.Addr{}, 0, fmt.Errorf("DNS server %v: %w", server, err)
	}
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return netip.Addr{}, 0, fmt.Errorf("DNS server %v: %w", server, err)
		}
		a, ttl, err := parseAAAA(buf[:n], id, q)
		if errors.Is(err, errNotOurs) {
			continue // a stray or spoofed answer: keep waiting (RFC 5452 §4)
		}
		if err != nil {
			return netip.Addr{}, 0, fmt.Errorf("DNS server %v: %w", server, err)
		}
		return a, ttl, nil
	}
}

var errNotOurs = errors.New("not the answer to our query")

// parseAAAA takes the first AAAA of the answer to q, following the CNAME
// chain the answer section gives (at most 8 links).
func parseAAAA(b []byte, id uint16, q dnsmessage.Question) (netip.Addr, time.Duration, error) {
	var p dnsmessage.Parser
	h, err := p.Start(b)
	if err != nil || h.ID != id || !h.Response {
		return netip.Addr{}, 0, errNotOurs
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 || !strings.EqualFold(qs[0].Name.String(), q.Name.String()) || qs[0].Type != q.Type {
		return netip.Addr{}, 0, errNotOurs
	}
	if h.RCode != dnsmessage.RCodeSuccess {
		return netip.Addr{}, 0, fmt.Errorf("answer %v", h.RCode)
	}
	if h.Truncated {
		return netip.Addr{}, 0, errors.New("answer truncated")
	}
	rrs, err := p.AllAnswers()
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("bad answer: %w", err)
	}
	want := strings.ToLower(q.Name.String())
	ttl := MaxTTL
	for range 8 {
		next := ""
		for _, rr := range rrs {
			if !strings.EqualFold(rr.Header.Name.String(), want) {
				continue
			}
			switch body := rr.Body.(type) {
			case *dnsmessage.AAAAResource:
				a := netip.AddrFrom16(body.AAAA)
				if a.Is4In6() || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
					return netip.Addr{}, 0, fmt.Errorf("AAAA %v is not a unicast IPv6 address", a)
				}
				ttl = min(ttl, time.Duration(rr.Header.TTL)*time.Second)
				return a, max(ttl, minTTL), nil
			case *dnsmessage.CNAMEResource:
				next = strings.ToLower(body.CNAME.String())
				ttl = min(ttl, time.Duration(rr.Header.TTL)*time.Second)
			}
		}
		if next == "" {
			break
		}
		want = next
	}
	return netip.Addr{}, 0, errors.New("no AAAA record")
}
