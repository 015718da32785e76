// Package hugepage asks the kernel to back large, randomly accessed arrays
// with transparent huge pages, where it supports them.
//
// The simulator's tables (conntrack slots, entries, port bitsets) are tens
// of MiB read at random: with 4 KiB pages nearly every lookup misses the
// TLB too, and in a virtual machine a TLB miss is a two-level page walk.
// Most distributions set transparent_hugepage to "madvise", where only
// memory the process marks gets huge pages; Go's heap marks none.
package hugepage

import "unsafe"

// Min is the smallest array worth marking: one huge page.
const Min = 2 << 20

// Slice marks the whole huge pages inside s's backing array (len to cap)
// for transparent huge pages. It is a hint: it changes no contents and
// fails silently (other systems, THP disabled, a kernel that refuses).
func Slice[T any](s []T) {
	var zero T
	n := uintptr(cap(s)) * unsafe.Sizeof(zero)
	if n < Min || cap(s) == 0 {
		return
	}
	advise(unsafe.Pointer(unsafe.SliceData(s[:cap(s)])), n)
}
