package pcp

import (
	"fmt"
	"net/netip"
)

// Wire constants (RFC 6887 §7, §19.1).
const (
	// Version is the only PCP version this package speaks (RFC 6887 §7.1).
	Version = 2
	// ServerPort is where a server listens for requests and sends
	// unsolicited ANNOUNCEs from (RFC 6887 §19.1).
	ServerPort = 5351
	// ClientPort is where clients listen for multicast ANNOUNCEs
	// (RFC 6887 §14.1.1).
	ClientPort = 5350

	// HeaderLen is the length of the common request and response header.
	HeaderLen = 24
	// MaxMessageLen is the largest UDP payload PCP allows (RFC 6887 §7).
	MaxMessageLen = 1100
	// MapDataLen is the length of the MAP opcode data (RFC 6887 §11.1).
	MapDataLen = 36
	// PeerDataLen is the length of the PEER opcode data (RFC 6887 §12.1).
	PeerDataLen = 56
	// NonceLen is the length of the Mapping Nonce.
	NonceLen = 12
)

// Opcode is the 7-bit PCP operation code (RFC 6887 §19.2).
type Opcode uint8

// Opcodes defined by RFC 6887.
const (
	OpAnnounce Opcode = 0 // §14.1
	OpMap      Opcode = 1 // §11
	OpPeer     Opcode = 2 // §12
)

// Known reports whether the package can decode the opcode's data.
func (o Opcode) Known() bool { return o <= OpPeer }

// dataLen is the opcode-specific data length of a known opcode.
func (o Opcode) dataLen() int {
	switch o {
	case OpMap:
		return MapDataLen
	case OpPeer:
		return PeerDataLen
	}
	return 0
}

func (o Opcode) String() string {
	switch o {
	case OpAnnounce:
		return "ANNOUNCE"
	case OpMap:
		return "MAP"
	case OpPeer:
		return "PEER"
	}
	return fmt.Sprintf("OPCODE(%d)", uint8(o))
}

// ResultCode is the result of a request (RFC 6887 §7.4).
type ResultCode uint8

// Result codes of RFC 6887 §7.4.
const (
	Success               ResultCode = 0
	UnsuppVersion         ResultCode = 1
	NotAuthorized         ResultCode = 2
	MalformedRequest      ResultCode = 3
	UnsuppOpcode          ResultCode = 4
	UnsuppOption          ResultCode = 5
	MalformedOption       ResultCode = 6
	NetworkFailure        ResultCode = 7
	NoResources           ResultCode = 8
	UnsuppProtocol        ResultCode = 9
	UserExQuota           ResultCode = 10
	CannotProvideExternal ResultCode = 11
	AddressMismatch       ResultCode = 12
	ExcessiveRemotePeers  ResultCode = 13
)

var resultNames = [...]string{
	Success:               "SUCCESS",
	UnsuppVersion:         "UNSUPP_VERSION",
	NotAuthorized:         "NOT_AUTHORIZED",
	MalformedRequest:      "MALFORMED_REQUEST",
	UnsuppOpcode:          "UNSUPP_OPCODE",
	UnsuppOption:          "UNSUPP_OPTION",
	MalformedOption:       "MALFORMED_OPTION",
	NetworkFailure:        "NETWORK_FAILURE",
	NoResources:           "NO_RESOURCES",
	UnsuppProtocol:        "UNSUPP_PROTOCOL",
	UserExQuota:           "USER_EX_QUOTA",
	CannotProvideExternal: "CANNOT_PROVIDE_EXTERNAL",
	AddressMismatch:       "ADDRESS_MISMATCH",
	ExcessiveRemotePeers:  "EXCESSIVE_REMOTE_PEERS",
}

// String returns the RFC name of the code, e.g. "MALFORMED_REQUEST".
func (r ResultCode) String() string {
	if int(r) < len(resultNames) {
		return resultNames[r]
	}
	return fmt.Sprintf("RESULT(%d)", uint8(r))
}

// Recommended error lifetimes (RFC 6887 §7.4).
const (
	ShortErrorLifetime = 30      // seconds
	LongErrorLifetime  = 30 * 60 // seconds
)

// ErrorLifetime is the lifetime RFC 6887 §7.4 recommends for an error
// response with code r: 30 s for the "short lifetime" errors, 30 min for
// the "long lifetime" ones, 0 for SUCCESS.
//
// CANNOT_PROVIDE_EXTERNAL has no class ("depends on the reason"); it gets
// the short lifetime, because the usual cause, a conflicting mapping, goes
// away. Codes unknown to RFC 6887 get the long lifetime.
func ErrorLifetime(r ResultCode) uint32 {
	switch r {
	case Success:
		return 0
	case NetworkFailure, NoResources, UserExQuota, CannotProvideExternal:
		return ShortErrorLifetime
	}
	return LongErrorLifetime
}

// Message is a decoded PCP message, request or response.
//
// Addresses are returned Unmap()ed: an IPv4-mapped field decodes to a
// 4-byte address (the "any IPv4" ::ffff:0.0.0.0 decodes to 0.0.0.0, and
// "::" stays ::). When encoding, 4-byte addresses are written IPv4-mapped
// and the zero netip.Addr is written as ::.
type Message struct {
	Version  uint8 // 0 encodes as Version (2)
	Response bool  // R bit
	Opcode   Opcode
	Result   ResultCode // responses only
	Lifetime uint32     // requested (request) or granted/error (response) lifetime, seconds
	Epoch    uint32     // responses only
	ClientIP netip.Addr // requests only: the PCP Client's IP Address field

	Map  *MapData  // MAP and PEER
	Peer *PeerData // PEER only

	// Options in wire order.
	Options []Option

	// Payload holds octets after the header that this package cannot
	// decode and does not reject: the whole payload of an unknown opcode,
	// and, in an error response (which copies the request, RFC 6887 §7.3),
	// the octets from where the opcode data is missing or the option
	// structure breaks. Encoding writes it after the options.
	Payload []byte
}

// MapData is the MAP opcode data (RFC 6887 §11.1), also the first 36
// octets of PEER (§12.1). In a request ExternalIP/ExternalPort are the
// suggested ones, in a response the assigned ones.
type MapData struct {
	Nonce        [NonceLen]byte
	Protocol     uint8 // IANA protocol number, 0 = all protocols
	InternalPort uint16
	ExternalPort uint16
	ExternalIP   netip.Addr
}

// PeerData is the part of the PEER opcode data after MapData (RFC 6887 §12.1).
type PeerData struct {
	RemotePort uint16
	RemoteIP   netip.Addr
}

// Option returns the first option with the given code.
func (m *Message) Option(code OptionCode) (Option, bool) {
	for _, o := range m.Options {
		if o.Code == code {
			return o, true
		}
	}
	return Option{}, false
}
