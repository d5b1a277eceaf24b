package pcp

import (
	"fmt"
	"time"
)

// ResultError is an error result from the server (RFC 6887 §7.4).
type ResultError struct {
	Code ResultCode
	// Lifetime is how long, in seconds, the same request gets the same
	// error (capped like a mapping lifetime, §8.3, §15). The client
	// answers a repeat within it with this error without sending.
	Lifetime uint32
	// Response is the error response; nil when it was not a PCP version 2
	// message (a NAT-PMP or other-version UNSUPP_VERSION, §9).
	Response *Message
}

func (e *ResultError) Error() string {
	return fmt.Sprintf("pcp: server answered %v (lifetime %d s)", e.Code, e.Lifetime)
}

// Is makes errors.Is(err, &ResultError{Code: c}) match any ResultError
// with code c.
func (e *ResultError) Is(target error) bool {
	t, ok := target.(*ResultError)
	return ok && t.Code == e.Code
}

func newResultError(code ResultCode, lifetime uint32, m *Message) *ResultError {
	return &ResultError{Code: code, Lifetime: uint32(capLifetime(lifetime) / time.Second), Response: m}
}

// heldError is an error result remembered until its lifetime ends.
type heldError struct {
	err   *ResultError
	until time.Time
}

func (h heldError) active(now time.Time) bool { return h.err != nil && now.Before(h.until) }

// holds remembers error results so the client honours their lifetimes
// (RFC 6887 §8.3, §9, §11.4). Not safe for concurrent use.
type holds struct {
	same   map[string]heldError // by request octets: "the same request"
	newMap heldError            // NO_RESOURCES on a create or renew: no new mappings
	all    heldError            // NO_RESOURCES on a delete, UNSUPP_VERSION: nothing at all
}

// check returns the remembered error that forbids sending req now.
// newMapping says whether req would create a mapping the client does not
// hold.
func (h *holds) check(req string, newMapping bool, now time.Time) *ResultError {
	if h.all.active(now) {
		return h.all.err
	}
	if newMapping && h.newMap.active(now) {
		return h.newMap.err
	}
	if e, ok := h.same[req]; ok {
		if e.active(now) {
			return e.err
		}
		delete(h.same, req)
	}
	return nil
}

// record remembers an error result e for request req; isDelete says
// whether req had lifetime 0.
func (h *holds) record(req string, e *ResultError, isDelete bool, now time.Time) {
	if e.Lifetime == 0 {
		return
	}
	he := heldError{err: e, until: now.Add(time.Duration(e.Lifetime) * time.Second)}
	switch {
	case e.Code == UnsuppVersion:
		h.all = he // §9: retry after min(30 min, Lifetime)
		return
	case e.Code == NoResources && isDelete:
		h.all = he // §11.4: no requests of any kind
	case e.Code == NoResources:
		h.newMap = he // §11.4: no requests for new mappings
	}
	if h.same == nil {
		h.same = make(map[string]heldError)
	}
	for k, v := range h.same { // keep the map small
		if !v.active(now) {
			delete(h.same, k)
		}
	}
	h.same[req] = he
}
