package lab

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// B4s come and go at run time (the soak test's churn): AddB4 starts one
// more at a new address, RemoveB4 stops one as a subscriber's box is
// switched off — its Run ends, which deletes its binding at the AFTR
// (b4.Config.KeepBinding unset), and everything it held is released: its
// access attachment, its LAN network and host, its own stack.

// maxIndex bounds B4 indices: B4Addr(i) is distinct for i+1 up to 0xffff.
const maxIndex = 0xffff - 1

// errNoNode is RemoveB4's error for a node that is not running.
var errNoNode = errors.New("lab: no such running B4")

// AddB4 builds and starts a new B4 at the next unused index (its address
// B4Addr(index), never one used before in this World), configured as New
// configures B4 i (Config.B4, Config.Bare, Config.LANRecv), and appends it
// to Nodes. It does not wait for the B4 to be provisioned.
func (w *World) AddB4() (*Node, error) {
	switch {
	case w.ctx == nil || w.ctx.Err() != nil:
		return nil, errors.New("lab: the world is closed")
	case len(w.Nodes) >= MaxB4s:
		return nil, fmt.Errorf("lab: %d B4s running: at most %d", len(w.Nodes), MaxB4s)
	case w.next > maxIndex:
		return nil, fmt.Errorf("lab: B4 addresses used up (%d B4s started)", w.next)
	}
	i := w.next
	w.next++
	return w.startNode(i)
}

// RemoveB4 stops n and releases it: its Run returns (having sent the
// delete of its binding, when it held one), then its attachments, stack
// and LAN host are closed and it leaves Nodes. It returns when all that is
// done.
func (w *World) RemoveB4(n *Node) error {
	i := slices.Index(w.Nodes, n)
	if i < 0 {
		return fmt.Errorf("%w: %v", errNoNode, n.Addr)
	}
	w.Nodes = slices.Delete(w.Nodes, i, i+1)
	n.stop()
	<-n.done
	n.close()
	return nil
}

// startNode builds B4 i and runs it under its own child of w.ctx.
func (w *World) startNode(i int) (*Node, error) {
	n, err := w.addNode(i)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(w.ctx)
	n.stop, n.done = stop, make(chan struct{})
	w.Nodes = append(w.Nodes, n)
	go func() {
		n.B4.Run(ctx)
		close(n.done)
	}()
	return n, nil
}

// stopNodes ends every running B4's Run and waits for all of them: all are
// told at once, so their deletes go out together.
func (w *World) stopNodes() {
	if w.cancel != nil {
		w.cancel()
	}
	for _, n := range w.Nodes {
		<-n.done
	}
}

// closeNodes releases every node's parts; stopNodes has run.
func (w *World) closeNodes() {
	for _, n := range w.Nodes {
		n.close()
	}
}

// close runs the node's closers once, in order.
func (n *Node) close() {
	cs := n.closers
	n.closers = nil
	for _, c := range cs {
		c()
	}
}
