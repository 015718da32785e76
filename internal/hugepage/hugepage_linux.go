package hugepage

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// advise marks the huge-page-aligned part of [p, p+n).
func advise(p unsafe.Pointer, n uintptr) {
	base := uintptr(p)
	skip := (base+Min-1)&^(Min-1) - base
	if skip >= n {
		return
	}
	size := (n - skip) &^ (Min - 1)
	if size == 0 {
		return
	}
	unix.Madvise(unsafe.Slice((*byte)(unsafe.Add(p, skip)), size), unix.MADV_HUGEPAGE)
}

// populate faults in the whole pages of [p, p+n) for writing, one huge
// page at a time from the end, and stops at the first refusal (a kernel
// before 5.14 has no MADV_POPULATE_WRITE: the pages are then faulted in
// by whoever writes them first).
func populate(p unsafe.Pointer, n uintptr) {
	base := uintptr(p)
	lo := (base + pageSize - 1) &^ (pageSize - 1)
	hi := (base + n) &^ (pageSize - 1)
	for hi > lo {
		from := max(lo, (hi-1)&^(Min-1))
		b := unsafe.Slice((*byte)(unsafe.Add(p, from-base)), hi-from)
		if err := unix.Madvise(b, unix.MADV_POPULATE_WRITE); err != nil {
			return
		}
		hi = from
	}
}

// pageSize is the base page size, the unit madvise works in.
var pageSize = uintptr(unix.Getpagesize())
