package aftr

import (
	"testing"
)

// The UDP underlay's handshake predicates on real PCP exchanges: a MAP
// request is a claim, the AFTR's answer carries the same id, SUCCESS
// grants and NOT_AUTHORIZED (another nonce) does not; data is neither.
func TestUnderlayPredicates(t *testing.T) {
	r := newRig(t, nil)
	req := pcpPacket(tB4A, b4Req(1, 3600).marshal(t))
	id, ok := UnderlayClaim(req)
	if !ok {
		t.Fatal("a PCP MAP request is not a claim")
	}
	r.a.FromAccess(req)
	ans := r.oneAccess()
	if aid, isAnswer, granted := UnderlayAnswer(ans); !isAnswer || !granted || aid != id {
		t.Errorf("answer: id %x (claim %x) answer %v granted %v", aid, id, isAnswer, granted)
	}
	if _, ok := UnderlayClaim(ans); ok {
		t.Error("an answer taken for a claim")
	}
	// Another nonce for the same B4: refused, not granted.
	thief := pcpPacket(tB4A, b4Req(9, 3600).marshal(t))
	tid, _ := UnderlayClaim(thief)
	r.a.FromAccess(thief)
	if aid, isAnswer, granted := UnderlayAnswer(r.oneAccess()); !isAnswer || granted || aid != tid || tid == id {
		t.Errorf("refused answer: id %x (claim %x) answer %v granted %v", aid, tid, isAnswer, granted)
	}
	// Data both ways is neither.
	ip, first, _ := r.bind(tB4B, 2)
	data := encap(tB4B, tAFTR, udp4(ip, tRemote, first, 53, 64, []byte("x")))
	if _, ok := UnderlayClaim(data); ok {
		t.Error("data taken for a claim")
	}
	if _, isAnswer, _ := UnderlayAnswer(data); isAnswer {
		t.Error("data taken for an answer")
	}
	for _, junk := range [][]byte{nil, {0x60}, make([]byte, 40)} {
		UnderlayClaim(junk)
		UnderlayAnswer(junk)
	}
}
