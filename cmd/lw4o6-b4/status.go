package main

import (
	"bytes"
	"fmt"
	"io"
	"slices"

	"github.com/lw4o6/lw4o6/b4"
)

// writeStatus prints what the B4 holds, for an operator: provisioning, the
// pool's fill, every port set, the explicit mappings (LAN PCP, NAT-PMP,
// forwards) and the non-zero counters in name order.
// It writes once, so that its lines stay together on a shared stdout.
func writeStatus(w io.Writer, st b4.Status) {
	var b bytes.Buffer
	defer func() { w.Write(b.Bytes()) }()
	if st.Provisioned {
		fmt.Fprintf(&b, "status: provisioned (%s) public IPv4 %v ports %v expires %v\n", st.Provisioning, st.PublicIPv4, st.Ports, st.Expires.Format("2006-01-02T15:04:05Z07:00"))
	} else {
		fmt.Fprintf(&b, "status: not provisioned (%s)\n", st.Provisioning)
	}
	fmt.Fprintf(&b, "pool: %v\n", st.Pool)
	for _, s := range st.Sets {
		fmt.Fprintf(&b, "set %d: %v ports %v used %d\n", s.Number, s.IPv4, s.Ports, s.Used)
	}
	fmt.Fprintf(&b, "mappings: %d explicit\n", len(st.LANMappings))
	for _, m := range st.LANMappings {
		fmt.Fprintf(&b, "mapping: %v\n", m)
	}
	names := make([]string, 0, len(st.Counters))
	for k := range st.Counters {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		fmt.Fprintf(&b, "counter: %s %d\n", k, st.Counters[k])
	}
}
