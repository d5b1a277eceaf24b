package snabbconf

import (
	"math"
	"net/netip"
)

type instBuild struct {
	inst   Instance
	device bool
	ids    map[int]int // queue id → line
}

type queueBuild struct {
	q         Queue
	id        bool
	ext, int6 *qiBuild
}

type qiBuild struct {
	qi      QueueInterface
	ip      bool
	nextHop seenLeaf // the first next-hop leaf, for the choice check
}

var instanceSpecs = map[string]spec[instBuild]{
	"device": {leaf, func(p *parser, b *instBuild, s *stmt) (err error) {
		b.device = true
		b.inst.Device, err = p.strVal(s)
		return err
	}},
	// v3 moved queue/external-interface/device up to here.
	"external-device": strLeaf(func(b *instBuild, v string) { b.inst.ExternalDevice = v }),
	"queue":           {list, readQueue},
}

var queueSpecs = map[string]spec[queueBuild]{
	// v2 limits id to 0..1, v3 to a uint8.
	"id": {leaf, func(p *parser, b *queueBuild, s *stmt) error {
		v, err := p.uintVal(s, 0, math.MaxUint8)
		b.id, b.q.ID = true, int(v)
		return err
	}},
	"external-interface": {container, func(p *parser, b *queueBuild, s *stmt) error {
		b.ext = &qiBuild{qi: QueueInterface{VLANTag: -1}}
		return walk(p, s, b.ext, queueIfaceSpecs(false))
	}},
	"internal-interface": {container, func(p *parser, b *queueBuild, s *stmt) error {
		b.int6 = &qiBuild{qi: QueueInterface{VLANTag: -1}}
		return walk(p, s, b.int6, queueIfaceSpecs(true))
	}},
}

var (
	queueExtSpecs = makeQueueIfaceSpecs(false)
	queueIntSpecs = makeQueueIfaceSpecs(true)
)

func queueIfaceSpecs(v6 bool) map[string]spec[qiBuild] {
	if v6 {
		return queueIntSpecs
	}
	return queueExtSpecs
}

func makeQueueIfaceSpecs(v6 bool) map[string]spec[qiBuild] {
	// next-hop holds the schema's mandatory choice "address": ip or mac.
	choice := func(set func(p *parser, b *qiBuild, s *stmt) error) spec[qiBuild] {
		return spec[qiBuild]{leaf, func(p *parser, b *qiBuild, s *stmt) error {
			if b.nextHop.line != 0 {
				e := p.newError(s, ErrDuplicate, "next-hop takes ip or mac, not both (%s given at line %d)", b.nextHop.kw, b.nextHop.line)
				e.OtherLine = b.nextHop.line
				return e
			}
			b.nextHop = seenLeaf{s.kw, s.line}
			return set(p, b, s)
		}}
	}
	nextHop := map[string]spec[qiBuild]{
		"ip": choice(func(p *parser, b *qiBuild, s *stmt) (err error) {
			if v6 {
				b.qi.NextHopIP, err = p.ipv6Val(s)
			} else {
				b.qi.NextHopIP, err = p.ipv4Val(s)
			}
			return err
		}),
		"mac": choice(func(p *parser, b *qiBuild, s *stmt) (err error) {
			b.qi.NextHopMAC, err = p.macVal(s)
			return err
		}),
	}
	m := map[string]spec[qiBuild]{
		"ip": addrLeaf(v6, func(b *qiBuild, a netip.Addr) { b.qi.IP, b.ip = a, true }),
		"mac": {leaf, func(p *parser, b *qiBuild, s *stmt) (err error) {
			b.qi.MAC, err = p.macVal(s)
			return err
		}},
		"vlan-tag": uintLeaf(0, 4095, func(b *qiBuild, v uint64) { b.qi.VLANTag = int(v) }),
		"next-hop": sub(nextHop, func(b *qiBuild) *qiBuild { return b }),
	}
	if !v6 {
		m["device"] = strLeaf(func(b *qiBuild, v string) { b.qi.Device = v })
	}
	return m
}

func readInstance(p *parser, b *builder, s *stmt) error {
	ib := instBuild{inst: Instance{Line: s.line}, ids: map[int]int{}}
	if err := walk(p, s, &ib, instanceSpecs); err != nil {
		return err
	}
	if !ib.device {
		return p.missing(s, "device")
	}
	for _, o := range b.cfg.Instances {
		if o.Device == ib.inst.Device {
			e := p.newError(s, ErrDuplicate, "instance device %q is already defined at line %d", o.Device, o.Line)
			e.OtherLine = o.Line
			return e
		}
	}
	if ib.inst.ExternalDevice == "" {
		for _, q := range ib.inst.Queues {
			if q.External.Device != "" {
				ib.inst.ExternalDevice = q.External.Device
				break
			}
		}
	}
	b.cfg.Instances = append(b.cfg.Instances, ib.inst)
	return nil
}

func readQueue(p *parser, ib *instBuild, s *stmt) error {
	qb := queueBuild{q: Queue{Line: s.line}}
	if err := walk(p, s, &qb, queueSpecs); err != nil {
		return err
	}
	switch {
	case !qb.id:
		return p.missing(s, "id")
	case qb.ext == nil || !qb.ext.ip:
		return p.missing(s, "external-interface/ip")
	case qb.int6 == nil || !qb.int6.ip:
		return p.missing(s, "internal-interface/ip")
	}
	if first, dup := ib.ids[qb.q.ID]; dup {
		e := p.newError(s, ErrDuplicate, "queue id %d is already defined at line %d", qb.q.ID, first)
		e.OtherLine = first
		return e
	}
	ib.ids[qb.q.ID] = s.line
	qb.q.External, qb.q.Internal = qb.ext.qi, qb.int6.qi
	ib.inst.Queues = append(ib.inst.Queues, qb.q)
	return nil
}
