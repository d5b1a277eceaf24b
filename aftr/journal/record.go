package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"time"

	"github.com/lw4o6/lw4o6/aftr/bindings"
	"github.com/lw4o6/lw4o6/stack/portset"
)

// Kind is what a record says.
type Kind uint8

const (
	// KindPut installs or renews a binding: the whole binding, with the
	// PCP mapping nonce that owns it (RFC 6887 §11.3), replacing what the
	// journal held for its B4.
	KindPut Kind = 1
	// KindDelete removes the dynamic binding of Binding.B4 and
	// Binding.Set (PCP delete, operator removal); for a static one, the
	// binding with that B4, IPv4 address and PSID.
	KindDelete Kind = 2
	// KindExpire says the AFTR swept at Time: every dynamic binding
	// recorded before it that expires at or before Time is gone, even if
	// the clock reads earlier at replay.
	KindExpire Kind = 3
	// KindEpoch records the PCP Epoch start (the wall-clock time of Epoch
	// 0, RFC 6887 §8.5), so that a restart that lost nothing continues it.
	KindEpoch Kind = 4

	kindNext Kind = 5 // snapshot only, first: the first log segment it does not hold
	kindEnd  Kind = 6 // snapshot only, last: how many records it holds
)

// Record is one entry of the journal.
type Record struct {
	Kind Kind
	// Binding: for KindPut the binding (Expires is zero for a static
	// one); for KindDelete its B4, and for a static one its IPv4 and PSID.
	Binding bindings.Binding
	// Nonce is the PCP mapping nonce of a KindPut (RFC 6887 §11.1).
	Nonce [12]byte
	// Time: KindExpire's sweep time, KindEpoch's Epoch start.
	Time time.Time

	n uint64 // kindNext, kindEnd
}

// On disk a record is its payload's length (uint32), the CRC32C
// (Castagnoli) of the payload (uint32), both little-endian, then the
// payload: the kind, then its fixed fields. Every kind has one length, so a
// length that is not the kind's is corruption like a bad CRC.
const (
	headerLen = 8
	// maxPayload bounds every read: a corrupt length never makes replay
	// read (or allocate) more than this.
	maxPayload = 64

	putLen   = 1 + 1 + 16 + 4 + 4 + 16 + 8 + 12 + 2 // kind flags b4 ipv4 psid br expires nonce set
	delLen   = 1 + 1 + 16 + 4 + 4 + 2               // kind flags b4 ipv4 psid set
	timeLen  = 1 + 8                                // kind, Unix ns
	countLen = 1 + 8                                // kind, n

	flagStatic = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt: a record that is whole but cannot be right (bad CRC, length
// or field). Replay stops there.
var errCorrupt = errors.New("corrupt record")

// appendRecord appends r's encoding to b.
func appendRecord(b []byte, r *Record) []byte {
	start := len(b)
	b = append(b, make([]byte, headerLen)...)
	p := len(b)
	b = append(b, byte(r.Kind))
	switch r.Kind {
	case KindPut, KindDelete:
		bd := &r.Binding
		var flags byte
		if bd.Static {
			flags |= flagStatic
		}
		b = append(b, flags)
		b4 := bd.B4.As16()
		b = append(b, b4[:]...)
		var ip [4]byte
		if v := bd.IPv4.Unmap(); v.Is4() {
			ip = v.As4()
		}
		b = append(b, ip[:]...)
		b = append(b, bd.PSID.Offset, bd.PSID.Length)
		b = binary.LittleEndian.AppendUint16(b, bd.PSID.ID)
		if r.Kind == KindPut {
			var br [16]byte
			if bd.BR.Is6() {
				br = bd.BR.As16()
			}
			b = append(b, br[:]...)
			var exp int64
			if !bd.Static && !bd.Expires.IsZero() {
				exp = bd.Expires.UnixNano()
			}
			b = binary.LittleEndian.AppendUint64(b, uint64(exp))
			b = append(b, r.Nonce[:]...)
		}
		// Which of its B4's port sets (docs/port-sets.md).
		b = binary.LittleEndian.AppendUint16(b, bd.Set)
	case KindExpire, KindEpoch:
		b = binary.LittleEndian.AppendUint64(b, uint64(r.Time.UnixNano()))
	case kindNext, kindEnd:
		b = binary.LittleEndian.AppendUint64(b, r.n)
	}
	n := len(b) - p
	binary.LittleEndian.PutUint32(b[start:], uint32(n))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(b[p:], castagnoli))
	return b
}

// payloadLen returns the payload length in a record header, or an error
// when it cannot be one (0, or over maxPayload): read no further.
func payloadLen(h []byte) (int, error) {
	n := binary.LittleEndian.Uint32(h)
	if n == 0 || n > maxPayload {
		return 0, fmt.Errorf("%w: length %d", errCorrupt, n)
	}
	return int(n), nil
}

// decodeRecord checks a payload against the CRC of its header and decodes
// it into r.
func decodeRecord(h, p []byte, r *Record) error {
	if crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(h[4:]) {
		return fmt.Errorf("%w: CRC mismatch", errCorrupt)
	}
	*r = Record{Kind: Kind(p[0])}
	if want := kindLen(r.Kind); want == 0 || len(p) != want {
		return fmt.Errorf("%w: kind %d of %d octets", errCorrupt, p[0], len(p))
	}
	switch r.Kind {
	case KindPut, KindDelete:
		flags := p[1]
		if flags&^flagStatic != 0 {
			return fmt.Errorf("%w: flags %#x", errCorrupt, flags)
		}
		bd := &r.Binding
		bd.Static = flags&flagStatic != 0
		bd.B4 = netip.AddrFrom16([16]byte(p[2:18]))
		bd.IPv4 = netip.AddrFrom4([4]byte(p[18:22]))
		psid, err := portset.NewPSID(p[22], p[23], binary.LittleEndian.Uint16(p[24:26]))
		if err != nil {
			return fmt.Errorf("%w: %v", errCorrupt, err)
		}
		bd.PSID = psid
		bd.Set = binary.LittleEndian.Uint16(p[len(p)-2:])
		if bd.Set > bindings.MaxSet {
			return fmt.Errorf("%w: set %d", errCorrupt, bd.Set)
		}
		if r.Kind == KindDelete {
			return nil
		}
		bd.BR = netip.AddrFrom16([16]byte(p[26:42]))
		exp := int64(binary.LittleEndian.Uint64(p[42:50]))
		switch {
		case bd.Static && exp != 0, !bd.Static && exp <= 0:
			return fmt.Errorf("%w: expiry %d of a binding static=%v", errCorrupt, exp, bd.Static)
		case !bd.Static:
			bd.Expires = time.Unix(0, exp)
		}
		copy(r.Nonce[:], p[50:62])
	case KindExpire, KindEpoch:
		r.Time = time.Unix(0, int64(binary.LittleEndian.Uint64(p[1:])))
	case kindNext, kindEnd:
		r.n = binary.LittleEndian.Uint64(p[1:])
	}
	return nil
}

// kindLen is the payload length of a kind; 0 for an unknown one.
func kindLen(k Kind) int {
	switch k {
	case KindPut:
		return putLen
	case KindDelete:
		return delLen
	case KindExpire, KindEpoch:
		return timeLen
	case kindNext, kindEnd:
		return countLen
	}
	return 0
}
