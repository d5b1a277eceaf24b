package pcp

import (
	"encoding/binary"
	"time"
)

// Input processes one datagram from the server. Run calls it for what
// conn reads; call it for datagrams from another socket that listens for
// ANNOUNCE (port 5350, §14.1.3) once their source is checked to be the
// server's (§8.3). State-loss callbacks only happen while Run runs.
func (c *Client) Input(b []byte) {
	// §8.3 in order: length, R bit, UNSUPP_VERSION, then length/alignment
	// (in Parse), then matching and the Epoch check.
	if len(b) < 4 || b[1]&0x80 == 0 {
		return
	}
	if ResultCode(b[3]) == UnsuppVersion {
		c.versionMismatch(b)
		return
	}
	m, err := Parse(b)
	if err != nil {
		c.log.Debug("pcp: response ignored", "err", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var matched []*pending
	for p := range c.pending {
		if p.opcode == m.Opcode && p.match(m) {
			matched = append(matched, p)
		}
	}
	if len(matched) == 0 && m.Opcode != OpAnnounce {
		return // a response to nothing we asked: ignored (§8.3)
	}
	valid := c.epoch.check(m.Epoch, c.seconds())
	for _, p := range matched {
		select {
		case p.ch <- reply{m: m}:
		default: // already answered
		}
	}
	if !valid {
		c.log.Info("pcp: server Epoch out of range, server may have lost state", "opcode", m.Opcode, "epoch", m.Epoch)
		var wait time.Duration
		if m.Opcode == OpAnnounce {
			wait = time.Duration(c.rand() * float64(5*time.Second)) // §14.1.3
		}
		c.stateLossLocked(wait)
	}
}

// versionMismatch handles UNSUPP_VERSION (§9). The reply may be NAT-PMP
// (version 0, whose octets 2-3 hold result 1) or another PCP version, so
// only the opcode can be matched; every request with that opcode fails.
// We speak only version 2, so the retry comes after min(30 min, Lifetime);
// NAT-PMP has no Lifetime field, so it gets 30 min.
func (c *Client) versionMismatch(b []byte) {
	op := Opcode(b[1] & 0x7f)
	lifetime := uint32(LongErrorLifetime)
	if b[0] != 0 && len(b) >= 8 {
		lifetime = min(lifetime, binary.BigEndian.Uint32(b[4:]))
	}
	var m *Message
	if b[0] == Version {
		m, _ = Parse(b)
	}
	e := newResultError(UnsuppVersion, lifetime, m)
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for p := range c.pending {
		if p.opcode == op {
			n++
			select {
			case p.ch <- reply{err: e}:
			default:
			}
		}
	}
	if n > 0 {
		c.log.Warn("pcp: server does not support PCP version 2", "version", b[0], "retry", lifetime)
		c.holds.record("", e, false, c.clock.Now())
	}
}

// stateLossLocked schedules OnStateLoss after wait, unless one is already
// scheduled or running: the callback renews everything, so a second hint
// meanwhile adds nothing. c.mu is held.
func (c *Client) stateLossLocked(wait time.Duration) {
	if c.onStateLoss == nil || c.lossPending || c.loopCtx == nil {
		return
	}
	ctx := c.loopCtx
	c.lossPending = true
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if wait > 0 {
			select {
			case <-ctx.Done():
			case <-c.clock.After(wait):
			}
		}
		if ctx.Err() == nil {
			c.onStateLoss()
		}
		c.mu.Lock()
		c.lossPending = false
		c.mu.Unlock()
	}()
}

// seconds is the client time for the Epoch check: whole seconds since the
// client started, from a clock that does not go backwards (§8.5).
func (c *Client) seconds() int64 { return int64(c.clock.Now().Sub(c.origin) / time.Second) }

func (c *Client) rand() float64 {
	c.rndMu.Lock()
	defer c.rndMu.Unlock()
	return c.rnd.Float64()
}
