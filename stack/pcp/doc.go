// Package pcp is the Port Control Protocol, version 2 (RFC 6887), with the
// PORT_SET (RFC 7753), DESCRIPTION (RFC 7220) and PREFIX64 (RFC 7225)
// options: the wire format, a server core and a client. lw4o6 uses it to
// provision B4 port sets (PROTOCOL.md §8).
//
// # Wire format
//
// Parse decodes a request or response into a Message and Marshal (or
// AppendMessage) encodes one. IPv4 addresses travel IPv4-mapped (§5) and
// decode as 4-byte netip.Addr values. Options keep their order; known ones
// have constructors and decoders:
//
//	m := &pcp.Message{
//		Opcode:   pcp.OpMap,
//		Lifetime: 7200,
//		ClientIP: netip.MustParseAddr("192.0.0.2"),
//		Map:      &pcp.MapData{Nonce: nonce, ExternalIP: netip.IPv4Unspecified()},
//		Options:  []pcp.Option{pcp.PortSetOption(pcp.PortSet{Size: 65535})},
//	}
//	b, err := pcp.Marshal(m)        // 72 octets
//	m2, err := pcp.Parse(b)
//	ps, ok, err := m2.PortSet()     // also ThirdParty, Filters, Description, PreferFailure
//
// Parse errors wrap sentinel values (ErrShort, ErrOptionFraming, ...);
// ResultOf gives the result code a server answers each with.
//
// # Server
//
// Server.Handle turns a request datagram into a response datagram (nil:
// drop). It applies RFC 6887 §8.2 in order, the option rules of §7.3 and
// §13, the MAP and PEER field rules of §11.3, §12.1 and §15.1, and RFC 7753
// §4, builds error responses by copying the request, and passes what
// survives to a Handler (MAP) or PeerHandler (PEER). It answers ANNOUNCE
// itself and keeps the Epoch (§8.5): ResetEpoch after state loss, then send
// Announce copies (§14.1.3). Project conventions: protocol 0 with a
// non-zero internal port is accepted only with PORT_SET (PROTOCOL.md §8
// item 1); PORT_SET running past port 65535 is MALFORMED_OPTION (§2.3);
// THIRD_PARTY is refused unless ServerConfig.ThirdPartyAllowed says yes
// (§8 item 4).
//
// # Client
//
// Client talks to one server over a connected UDP socket. Run reads
// responses; Map sends a MAP and retransmits it (§8.1.1) until answered;
// Announce reads the server's Epoch. Responses are matched (§8.3, §11.4)
// and Epoch-checked (§8.5); a failed check or an out-of-range ANNOUNCE
// calls ClientConfig.OnStateLoss. Error results come back as *ResultError
// and are remembered for their lifetime. Mapping.RenewAt and
// Mapping.Renewal give the renewal instants of §11.2.1:
//
//	c := pcp.NewClient(conn, pcp.ClientConfig{Nonce: &saved, OnStateLoss: renewNow})
//	go c.Run(ctx)
//	m, err := c.Map(ctx, pcp.MapRequest{Lifetime: 7200, PortSet: &pcp.PortSet{Size: 65535}})
//	// m.ExternalIP, m.ExternalPort (first port), m.PortSet.Size; renew at m.RenewAt(nil)
//	// with SuggestedIP/SuggestedPort = m.ExternalIP/m.ExternalPort.
package pcp
