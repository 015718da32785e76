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

// Prefault faults s's memory in for writing on another goroutine, its last
// huge page first, without changing a byte of it (MADV_POPULATE_WRITE,
// Linux 5.14 and later; elsewhere it does nothing), and returns what waits
// for it to finish. Meant for a large fresh buffer a syscall is about to
// fill from the front: the kernel's copy and Prefault fault it in from
// both ends on two CPUs, where the copy alone would on one. Fresh memory
// costs: in a virtual machine, 60 MB took 0.2 s to fault in on one CPU.
func Prefault(s []byte) (wait func()) {
	if len(s) < Min {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		populate(unsafe.Pointer(unsafe.SliceData(s)), uintptr(len(s)))
	}()
	return func() { <-done }
}
