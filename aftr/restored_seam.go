package aftr

// Restored reports whether the AFTR's bindings were restored from a
// journal at start. Placeholder, replaced by the journal: without one,
// every start is a state loss (RFC 6887 §8.5, §14.1.3).
func (a *AFTR) Restored() bool { return false }
