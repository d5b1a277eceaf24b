// Package frag is the packet path's first and last stage (the Snabb lwAFTR
// composition: reassembly → core → fragmentation, so the core never sees a
// fragment): bounded reassembly and fragmentation of IPv4 (RFC 791 §2.3,
// §3.2; RFC 815) and IPv6 (RFC 8200 §4.5) datagrams. RFC 6333 §5.3/§6.3 and
// RFC 2473 §7 make the tunnel endpoints fragment after encapsulation and
// reassemble before decapsulation; RFC 7597 §8.3.2 and RFC 6346 §5.3.3 make
// the port-range router reassemble IPv4 fragments from the Internet to learn
// their port.
//
// # API
//
//	Config{MaxFragmentsPerPacket, MaxPackets, Timeout, DropNewWhenFull, Now}  bounds; zero = default
//	NewReassembler4(cfg) / NewReassembler6(cfg)  bounded reassembly tables, one mutex each
//	(*Reassembler4).Add(pkt) ([]byte, error)     one IPv4 packet in; a whole datagram out when complete
//	(*Reassembler6).Add(pkt) ([]byte, error)     one IPv6 packet in; a whole packet out when complete
//	Expire() int, Stats() Stats                  on both: drop timed-out datagrams; counters
//	FragmentIPv4(pkt, mtu) ([][]byte, error)     RFC 791 §3.2 fragmentation, keeping pkt's ID
//	FragmentIPv4ID(pkt, mtu, id)                 the same, the fragments carrying id (Snabb's behaviour)
//	FragmentIPv6(pkt, mtu, id) ([][]byte, error) RFC 8200 §4.5 fragmentation with a new Fragment header
//	IDs, RandomIDs(), SequentialIDs(f4, f6)       fragment identification sources
//	ErrTooManyFragments ErrTableFull ErrTooBig ErrOverlap ErrDuplicate ErrMalformed ErrDF ErrMTU
//
// # Reassembly
//
// Add returns (datagram, nil) when pkt completed a datagram, (nil, nil) while
// it is incomplete, or a sentinel error naming a counted drop. A packet that
// is not a fragment is returned as it is (aliasing pkt, cut to its length);
// everything else Add returns is a new buffer, and Add never keeps pkt.
//
// The reassembled IPv4 datagram is the header (with options) of the
// offset-0 fragment, total length fixed, MF and offset cleared, header
// checksum recomputed; ID and DF stay as they were (Snabb zeroes ID and
// flags: that is the caller's rewrite). The reassembled IPv6 packet is the
// unfragmentable part of the offset-0 fragment with the Next Header field
// before the Fragment header restored and Payload Length fixed (RFC 8200
// §4.5). Keys: (src, dst, protocol, ID) for IPv4 (RFC 791), (src, dst, ID)
// for IPv6 (RFC 8200 §4.5).
//
// Bounds and drops, each with its Stats counter:
//   - MaxFragmentsPerPacket (default 20, Snabb's default): one more fragment
//     discards the whole datagram, ErrTooManyFragments.
//   - MaxPackets (default 1024) datagrams in flight. When the table is full,
//     expired datagrams go first, then the oldest one is evicted
//     (Stats.Evicted) and the new fragment is accepted: a datagram that has
//     waited longest is the least likely to complete, and dropping new ones
//     instead would let 1024 forged first fragments per Timeout stop all
//     reassembly. DropNewWhenFull selects the other policy (ErrTableFull).
//   - Timeout (default 30 s) from the first fragment. RFC 8200 §4.5 abandons
//     reassembly after at most 60 s and RFC 791 suggests a 15 s initial
//     timer; 30 s is Linux's ipfrag_time, and shorter is safer: 16-bit IPv4
//     IDs wrap within seconds at high rates (RFC 4963) and every second
//     a bogus fragment stays costs table space. Expired datagrams are
//     dropped lazily by Add and in bulk by Expire; no ICMP Time Exceeded is
//     sent (Snabb sends none either).
//   - Datagrams over 65535 octets: ErrTooBig (RFC 8200 §4.5; RFC 791's
//     16-bit total length).
//   - Overlap (RFC 5722; RFC 1858 for IPv4): an exact duplicate fragment is
//     dropped alone (ErrDuplicate, RFC 8200 §4.5 allows it). Any other
//     overlap in IPv6 discards the whole datagram (RFC 5722 §4, MUST). In
//     IPv4 an overlap carrying identical octets is accepted (routers may
//     refragment differently on retransmission) and one carrying different
//     octets discards the whole datagram: ErrOverlap either way.
//   - ErrMalformed: a non-final fragment whose payload is empty or not a
//     multiple of 8 (RFC 8200 §4.5; RFC 791), ends that disagree (a second
//     last fragment, data beyond the last one: whole datagram discarded), an
//     IPv6 first fragment whose extension header chain does not fit in it
//     (RFC 7112), a second Fragment header (RFC 8200 §4.1), fragments
//     whose ECN fields mix Not-ECT with ECT or CE (RFC 3168 §5.3 as Linux
//     applies it; otherwise CE in any fragment gives CE in the datagram).
//     Malformed IP headers (wrong version, lengths, IPv4 checksum) wrap the
//     packet package's error in ErrMalformed.
//
// An IPv6 atomic fragment (offset 0, M = 0) is processed in isolation, not
// entered in the table (RFC 6946 §4; RFC 8200 §4.5): Add returns it without
// its Fragment header.
//
// Memory is bounded: a datagram holds at most 65535 octets of fragment data
// (identical overlapping octets are stored once), so a table holds at most
// MaxPackets × 64 KiB.
//
// # Fragmentation
//
// A packet that fits in mtu is returned as the only element of the result,
// aliasing pkt (FragmentIPv4ID leaves its ID alone then, as Snabb does).
// Otherwise the fragments share one new buffer. The splitting rule, which
// reproduces Snabb lwAFTR's fragments byte for byte: every fragment but the
// last carries the largest multiple of 8 octets of the original payload that
// fits in mtu beside its headers, (mtu − IPv4 header) &^ 7 for IPv4 (552 at
// mtu 576) and (mtu − unfragmentable part − 8) &^ 7 for IPv6 (1232 at mtu
// 1280); the last fragment carries the rest. Fragments are emitted in order
// of offset.
//
// IPv4 (RFC 791 §3.2): DF set and the packet too big gives ErrDF (the
// caller sends ICMP "fragmentation needed", RFC 2473 §7.2). The first
// fragment keeps every option, later ones only those with the copied flag,
// padded with End of Option List. Fragmenting a fragment works: offsets are
// added to its own and its MF is kept on the last piece. Snabb gives the
// fragments a new ID from its own counter (FragmentIPv4ID). For an lwAFTR
// that lessens what RFC 7597 §8.3.3 describes: B4s sharing one IPv4
// address choose IDs independently, so their datagrams to one destination
// may collide (RFC 791 §3.2 wants an ID unique per source, destination and
// protocol while the datagram may be in transit); the fragments the AFTR
// makes from one counter do not collide with one another.
//
// IPv6 (RFC 8200 §4.5): the Fragment header goes after the unfragmentable
// part, i.e. after a Hop-by-Hop header and up to and including the last
// Routing header (and the Destination Options before it); the fragments'
// preceding Next Header becomes 44, the Fragment header carries the old
// value, reserved fields 0, id as given. The first fragment must hold the
// whole extension header chain (RFC 7112), else ErrMTU. A packet already
// carrying a Fragment header gives ErrMalformed. IDs should come from RandomIDs
// (RFC 7739: unpredictable); SequentialIDs(0x4243, 0x42424243) is Snabb's
// deterministic test mode.
package frag
