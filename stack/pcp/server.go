package pcp

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Handler serves the requests that passed every generic check of the
// Server. Implementations must be safe for concurrent use. The Request and
// all it points to (its Message, the options' data, PortSet, Filters) are
// valid only until the method returns: the Server reuses them, so copy
// what you keep.
type Handler interface {
	// Map serves a MAP request (RFC 6887 §11.3, §15; RFC 7753 §4.2). On
	// SUCCESS it returns the lifetime and the assigned external address and
	// port (for a port set, the first port and the PortSet actually mapped).
	// For a delete (lifetime 0) the server copies the suggested address and
	// port into the response itself (§15.1). On an error nothing may have
	// changed (§7.3).
	Map(r *Request) Response
}

// PeerHandler is implemented by a Handler that also serves PEER
// (RFC 6887 §12.3). Without it the server answers PEER with UNSUPP_OPCODE.
type PeerHandler interface {
	Peer(r *Request) Response
}

// Request is a MAP or PEER request that passed the checks of RFC 6887
// §8.2 and the option checks of §7.3, §11.3, §13 and RFC 7753 §4.2.
type Request struct {
	Message *Message   // the decoded request
	Src     netip.Addr // IP source of the datagram (= the Client IP field)
	Client  any        // the caller's identity for the client (see Server.Handle)

	// InternalIP is the mapping's internal address: the THIRD_PARTY
	// address if present, else Src (RFC 6887 §11.1).
	InternalIP netip.Addr
	// ThirdParty is the THIRD_PARTY address, the zero Addr without one.
	ThirdParty netip.Addr
	// PortSet is the requested set; nil without PORT_SET and for a set of
	// size 1, which RFC 7753 §4.2 says to handle as a plain MAP.
	PortSet *PortSet
	// Filters are the FILTER options in order (RFC 6887 §13.3); the
	// handler must apply them or fail (EXCESSIVE_REMOTE_PEERS).
	Filters []Filter
	// Description is the DESCRIPTION text (RFC 7220); nil when absent or
	// invalid (an invalid one is ignored, §3).
	Description *string
	// PreferFailure is set when the suggested address and port must be
	// granted exactly or the request fail with CANNOT_PROVIDE_EXTERNAL
	// (RFC 6887 §13.2).
	PreferFailure bool
}

// Response is a Handler's answer.
type Response struct {
	Result ResultCode
	// Lifetime is the mapping lifetime on SUCCESS. On an error it is how
	// long the same request gets the same error; 0 means ErrorLifetime(Result).
	Lifetime     uint32
	ExternalIP   netip.Addr // assigned external address (SUCCESS)
	ExternalPort uint16     // assigned external port, the first of a set (SUCCESS)
	// PortSet is the set actually mapped; the server writes PORT_SET only
	// when Size > 1 (RFC 7753 §4.2: never for a single port).
	PortSet *PortSet
	// Options are the optional options the handler processed and echoes
	// (e.g. DESCRIPTION as stored). The server itself echoes the mandatory
	// options it validated (THIRD_PARTY, PREFER_FAILURE, FILTER): a SUCCESS
	// asserts that the handler honoured them (§7.3). A response that
	// would pass 1100 octets is answered MALFORMED_REQUEST (§7.3) after the
	// handler acted, so echo no more than the request carried.
	Options []Option
}

// ServerConfig configures a Server.
type ServerConfig struct {
	Handler Handler          // MAP (and PEER if it is a PeerHandler); nil answers UNSUPP_OPCODE
	Now     func() time.Time // nil = time.Now
	Logger  *slog.Logger     // nil = discard
	// ThirdPartyAllowed authorises THIRD_PARTY for a client; nil refuses
	// it for everyone (RFC 6887 §13.1: UNSUPP_OPTION; PROTOCOL.md §8 item 4).
	ThirdPartyAllowed func(client any) bool
	// EpochStart is the wall-clock time of Epoch 0: a server that restarts
	// with every mapping restored continues its Epoch (RFC 6887 §8.5: reset
	// only when state was lost). Zero: start at 0 now.
	EpochStart time.Time
}

// Server is the protocol core of a PCP server: it turns a request datagram
// into a response datagram. It owns no socket. It is safe for concurrent use.
type Server struct {
	cfg   ServerConfig
	log   *slog.Logger
	epoch *epochClock
}

// NewServer returns a server whose Epoch starts at 0 now, or continues
// from cfg.EpochStart.
func NewServer(cfg ServerConfig) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	epoch := newEpochClock(cfg.Now)
	if !cfg.EpochStart.IsZero() {
		epoch.start = cfg.EpochStart
	}
	return &Server{cfg: cfg, log: log, epoch: epoch}
}

// Epoch is the current Epoch Time: seconds since start or the last reset.
func (s *Server) Epoch() uint32 { return s.epoch.epoch() }

// EpochStart is the wall-clock time of Epoch 0 (for a journal to keep).
func (s *Server) EpochStart() time.Time { return s.epoch.startTime() }

// ResetEpoch sets the Epoch back to 0. Call it when PCP-created mappings
// were lost or the external address changed (RFC 6887 §8.5), then send
// Announce (§14.1.3).
func (s *Server) ResetEpoch() { s.epoch.reset() }

// Announce returns an unsolicited ANNOUNCE response carrying the current
// Epoch (RFC 6887 §14.1.3). The caller sends it from the server's address
// and port 5351, up to 10 times, the first gap at least 250 ms and each
// later gap at least double; call Announce again for each copy so that the
// Epoch is current.
func (s *Server) Announce() []byte {
	b, _ := Marshal(&Message{Response: true, Opcode: OpAnnounce, Epoch: s.Epoch()})
	return b
}

// Handle processes one request datagram and returns the response datagram,
// or nil when the request must be dropped silently. src is the IP source
// address of the datagram; client is an opaque identity passed through to
// the Handler and to ThirdPartyAllowed (the lwAFTR passes the B4's outer
// IPv6 address, since every B4 sends from 192.0.0.2: PROTOCOL.md §8 item 3).
//
// The checks follow RFC 6887 §8.2 in order; the interface check (step 1)
// and overload shedding are the caller's.
func (s *Server) Handle(req []byte, src netip.Addr, client any) []byte {
	return s.AppendHandle(nil, req, src, client)
}

// AppendHandle is Handle appending the response to dst, which it returns;
// nil when the request must be dropped. A caller that keeps its buffers
// answers a request without allocating: the decoded request lives in
// pooled storage, its slices point into req, and the response is
// encoded straight into dst.
func (s *Server) AppendHandle(dst, req []byte, src netip.Addr, client any) []byte {
	if len(req) < 2 || req[1]&0x80 != 0 {
		return nil // §8.2: too short to hold R, or a response
	}
	if req[0] != Version {
		// §8.2, §9: reply with our only version, 2. A first octet of 0 is
		// NAT-PMP; this reply is what Appendix A calls compatible: octet 1
		// is 128+op and octets 2-3 read as NAT-PMP result 1 (Unsupported
		// Version).
		return s.refuse(dst, req, src, UnsuppVersion, 0, false, ErrVersion)
	}
	if len(req) < HeaderLen {
		return nil // §8.2: supported version but shorter than 24
	}
	op := Opcode(req[1] & 0x7f)
	switch {
	case len(req) > MaxMessageLen:
		return s.refuse(dst, req, src, MalformedRequest, 0, false, ErrTooLong)
	case len(req)%4 != 0:
		return s.refuse(dst, req, src, MalformedRequest, 0, false, ErrNotAligned)
	case op.Known() && len(req) < HeaderLen+op.dataLen():
		return s.refuse(dst, req, src, MalformedRequest, 0, false, ErrShortOpcode)
	}
	st := handleStates.Get().(*handleState)
	defer st.release()
	m := &st.m
	perr := decode(m, req, &st.dec) // Parse's own checks passed above
	parsed := perr == nil && op.Known()
	if getAddr(req[8:24]) != src.Unmap().WithZone("") {
		return s.refuse(dst, req, src, AddressMismatch, 0, parsed, ErrAddressMismatch)
	}
	if !s.supports(op) {
		return s.refuse(dst, req, src, UnsuppOpcode, 0, false, ErrOpcode)
	}
	if perr != nil {
		return s.refuse(dst, req, src, ResultOf(perr), 0, false, perr)
	}
	r, err := s.check(st, src, client)
	if err != nil {
		return s.refuse(dst, req, src, ResultOf(err), 0, true, err)
	}
	var resp Response // ANNOUNCE: SUCCESS, lifetime 0 (§14.1.2)
	switch op {
	case OpMap:
		resp = s.cfg.Handler.Map(r)
	case OpPeer:
		resp = s.cfg.Handler.(PeerHandler).Peer(r)
	}
	if resp.Result != Success {
		return s.refuse(dst, req, src, resp.Result, resp.Lifetime, true, nil)
	}
	out, err := s.success(dst, st, resp)
	if err != nil {
		return s.refuse(dst, req, src, MalformedRequest, 0, true, err)
	}
	return out
}

// handleState is what AppendHandle needs for one request: the decoded
// request, the Request the handler sees, and the response being built.
type handleState struct {
	m       Message
	dec     decodeStore
	r       Request
	portSet PortSet
	filters [4]Filter
	out     Message
	outMap  MapData
	outPeer PeerData
	outOpts [8]Option
	psData  [portSetLen]byte
}

var handleStates = sync.Pool{New: func() any { return new(handleState) }}

// release clears st (it points into the caller's datagram) and pools it.
func (st *handleState) release() {
	*st = handleState{}
	handleStates.Put(st)
}

func (s *Server) supports(op Opcode) bool {
	switch op {
	case OpAnnounce:
		return true
	case OpMap:
		return s.cfg.Handler != nil
	case OpPeer:
		_, ok := s.cfg.Handler.(PeerHandler)
		return ok
	}
	return false
}

// refuse builds an error response (RFC 6887 §8.2): the request copied, at
// most 1100 octets, zero-padded to a multiple of 4 (and to the 24-octet
// header), with R, the result, Lifetime and Epoch set. Reserved is 0 when
// the request parsed; otherwise it keeps the request's octets 12-23, the
// last 96 bits of the Client IP field, as §7.2 asks.
func (s *Server) refuse(dst, req []byte, src netip.Addr, code ResultCode, lifetime uint32, parsed bool, why error) []byte {
	if lifetime == 0 {
		lifetime = ErrorLifetime(code)
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("pcp: request refused", "src", src, "result", code, "lifetime", lifetime, "err", why)
	}
	n := min(len(req), MaxMessageLen)
	start := len(dst)
	dst = append(dst, make([]byte, max((n+3)&^3, HeaderLen))...)
	out := dst[start:]
	copy(out, req[:n])
	out[0] = Version
	out[1] |= 0x80
	out[2] = 0
	out[3] = byte(code)
	binary.BigEndian.PutUint32(out[4:], lifetime)
	binary.BigEndian.PutUint32(out[8:], s.Epoch())
	if parsed {
		clear(out[12:HeaderLen])
	}
	return dst
}

// success appends a success response to dst (RFC 6887 §8.2): the header,
// the opcode data with the fields the opcode copies (§11.3, §12.3), the
// mandatory options the server validated, then the handler's options.
func (s *Server) success(dst []byte, st *handleState, resp Response) ([]byte, error) {
	req := &st.m
	out := &st.out
	*out = Message{Response: true, Opcode: req.Opcode, Lifetime: resp.Lifetime, Epoch: s.Epoch(), Options: st.outOpts[:0]}
	if req.Opcode == OpAnnounce {
		out.Lifetime = 0 // §14.1.2
	}
	if req.Map != nil {
		st.outMap = *req.Map
		// §15.1: a delete's suggestions are ignored and copied back.
		if !(req.Opcode == OpMap && req.Lifetime == 0) {
			st.outMap.ExternalIP, st.outMap.ExternalPort = resp.ExternalIP, resp.ExternalPort
		}
		out.Map = &st.outMap
	}
	if req.Peer != nil {
		st.outPeer = *req.Peer
		out.Peer = &st.outPeer
	}
	for _, o := range req.Options {
		if o.Code.Mandatory() {
			out.Options = append(out.Options, o) // check() let only processed ones through
		}
	}
	if req.Opcode == OpMap && resp.PortSet != nil && resp.PortSet.Size > 1 {
		putPortSet(st.psData[:], *resp.PortSet)
		out.Options = append(out.Options, Option{Code: OptPortSet, Data: st.psData[:]})
	}
	out.Options = append(out.Options, resp.Options...)
	b, err := AppendMessage(dst, out)
	if err != nil {
		return nil, ErrResponseTooLong // §7.3: SHOULD answer MALFORMED_REQUEST
	}
	return b, nil
}
