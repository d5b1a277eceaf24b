package pcp

import "errors"

// codedError is a sentinel error that knows the result code a server
// answers it with.
type codedError struct {
	msg  string
	code ResultCode
}

func (e *codedError) Error() string { return "pcp: " + e.msg }

// Result is the result code a server answers this error with.
func (e *codedError) Result() ResultCode { return e.code }

func newError(code ResultCode, msg string) error { return &codedError{msg: msg, code: code} }

// Decoding errors (Parse). Each is wrapped with detail; test with errors.Is.
var (
	ErrShort         = newError(MalformedRequest, "message shorter than 24 octets")
	ErrTooLong       = newError(MalformedRequest, "message longer than 1100 octets")
	ErrNotAligned    = newError(MalformedRequest, "message length not a multiple of 4")
	ErrShortOpcode   = newError(MalformedRequest, "message too short for its opcode")
	ErrVersion       = newError(UnsuppVersion, "unsupported version")
	ErrOptionFraming = newError(MalformedOption, "option runs past the message")
	ErrOptionLength  = newError(MalformedOption, "option has the wrong length")
	ErrOptionRepeat  = newError(MalformedOption, "single-instance option repeated")
)

// Request-validation errors (Server, RFC 6887 §8.2, §11.3, §12.1, §13;
// RFC 7753 §4).
var (
	ErrAddressMismatch   = newError(AddressMismatch, "source address differs from the Client IP field")
	ErrOpcode            = newError(UnsuppOpcode, "unsupported opcode")
	ErrMandatoryOption   = newError(UnsuppOption, "unsupported mandatory option")
	ErrOptionNotAllowed  = newError(UnsuppOption, "option not valid for this opcode")
	ErrThirdPartyDenied  = newError(UnsuppOption, "THIRD_PARTY not allowed for this client")
	ErrThirdPartySelf    = newError(MalformedRequest, "THIRD_PARTY equals the source address")
	ErrPreferFailure     = newError(MalformedOption, "PREFER_FAILURE with lifetime 0 or suggested port 0")
	ErrPeerPreferFailure = newError(MalformedRequest, "PREFER_FAILURE in a PEER request")
	ErrFilterPrefix      = newError(MalformedOption, "FILTER prefix length invalid for the address family")
	ErrFilterDelete      = newError(MalformedOption, "FILTER in a request with lifetime 0")
	ErrPortSetSize       = newError(MalformedOption, "PORT_SET size 0")
	ErrPortSetFirst      = newError(MalformedOption, "PORT_SET first internal port differs from the internal port")
	ErrPortSetRange      = newError(MalformedOption, "PORT_SET runs past port 65535")
	ErrPortSetPrefer     = newError(MalformedOption, "PORT_SET with PREFER_FAILURE")
	ErrProtocolPort      = newError(MalformedRequest, "protocol 0 with a non-zero internal port")
	ErrPeerZero          = newError(MalformedRequest, "PEER with a zero protocol, internal port or remote port")
	ErrResponseTooLong   = newError(MalformedRequest, "response would exceed 1100 octets")
)

// Errors that are not about a message from the wire.
var (
	// ErrDescription reports a DESCRIPTION that is not UTF-8 or is longer
	// than 1016 octets; a server ignores such an option (RFC 7220 §3).
	ErrDescription = newError(MalformedOption, "DESCRIPTION not valid UTF-8 or too long")
	// ErrMissingData reports a Message whose Map or Peer field is missing
	// for its opcode.
	ErrMissingData = newError(MalformedRequest, "opcode data missing")
	// ErrInvalidRequest reports a MapRequest that breaks a client rule
	// (RFC 6887 §13.2, §13.3; RFC 7753 §4.1); it is never sent.
	ErrInvalidRequest = errors.New("pcp: invalid request")
	// ErrStopped reports that the client's Run loop has ended.
	ErrStopped = errors.New("pcp: client stopped")
)

// ResultOf returns the result code a server answers err with: SUCCESS for
// nil, the code of the package's sentinel errors (through any wrapping),
// and NO_RESOURCES, the catch-all of RFC 6887 §7.4, for anything else.
func ResultOf(err error) ResultCode {
	if err == nil {
		return Success
	}
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.code
	}
	var re *ResultError
	if errors.As(err, &re) {
		return re.Code
	}
	return NoResources
}
