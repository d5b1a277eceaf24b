// Package packet reads and writes the IP packets both lw4o6 twins handle, on
// byte slices and in place: IPv4-in-IPv6 encapsulation and decapsulation
// (RFC 2473 §3–§6, RFC 6333 §5.2 and §7.1: the tunnel is one virtual hop, the
// traffic class is copied both ways), the transport "ports" the port-range
// router looks up (RFC 7596 §6 and §8: TCP/UDP ports, the ICMP echo
// identifier, the embedded packet of an ICMP error), the ICMP errors the
// twins originate (ICMPv4 RFC 792, ICMPv6 RFC 4443) and the small UDP
// datagrams of PCP.
//
// Nothing here allocates unless it must build a new packet; nothing panics on
// malformed input: every parser returns a sentinel error instead.
package packet
