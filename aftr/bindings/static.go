package bindings

import "fmt"

// Changing the operator's bindings at runtime (a reloaded configuration):
// RemoveStatic and ReplaceStatics. Dynamic (PCP) bindings are never
// touched by either; a static binding that would take a live dynamic
// binding's port set is a conflict, as in AddStatic.

// RemoveStatic deletes the static binding b (its IPv4 address, PSID and
// B4; BR and Expires are ignored). It fails with ErrInvalid when the table
// holds no such static binding: a dynamic binding at the same port set, or
// a static one of another B4, stays.
func (t *Table) RemoveStatic(b Binding) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.removeStatic(b)
}

// ReplaceStatics removes the static bindings remove, then installs add,
// under one lock: a changed binding is its old form in remove and its new
// one in add. It is all or nothing: if one fails, the table is put back
// as it was and the index of the failing binding is returned with the
// error (i < len(remove): remove[i]; else add[i-len(remove)]).
// Lock-free readers may see the intermediate table for the duration of
// the call.
func (t *Table) ReplaceStatics(remove, add []Binding) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, b := range remove {
		if err := t.removeStatic(b); err != nil {
			t.rollback(remove[:i], nil)
			return i, err
		}
	}
	for i, b := range add {
		if err := t.addStatic(b); err != nil {
			t.rollback(remove, add[:i])
			return len(remove) + i, err
		}
	}
	return len(remove) + len(add), nil
}

// rollback undoes the first steps of a ReplaceStatics: removes added,
// then reinstalls removed. Both succeed: the slots they take were theirs
// a moment ago under the same lock.
func (t *Table) rollback(removed, added []Binding) {
	for i := len(added) - 1; i >= 0; i-- {
		_ = t.removeStatic(added[i])
	}
	for _, b := range removed {
		_ = t.addStatic(b)
	}
}

func (t *Table) removeStatic(b Binding) error {
	ip, err := validateForRemove(&b)
	if err != nil {
		return err
	}
	s := t.r.get(ip)
	if s == nil || s.a != b.PSID.Offset || s.k != b.PSID.Length {
		return fmt.Errorf("%w: no static binding %v", ErrInvalid, b)
	}
	v := s.slotAt(b.PSID.ID)
	if !v.present() || !v.static() || v.owner() != keyOf(b.B4) {
		return fmt.Errorf("%w: no static binding %v", ErrInvalid, b)
	}
	t.setSlot(ip, s, b.PSID.ID, slot{})
	return nil
}

// validateForRemove is validate without the BR: a binding is named by its
// IPv4 address, port set and B4.
func validateForRemove(b *Binding) (uint32, error) {
	if !b.BR.IsValid() {
		b.BR = b.B4 // any unicast address: the BR is not compared
	}
	return validate(b)
}
