package prefetch

import "unsafe"

// Line starts loading the cache line that holds p into every cache level.
// It is a hint: it changes no memory, and p may be any address (a
// prefetch does not fault).
//
//go:noescape
func Line(p unsafe.Pointer)
