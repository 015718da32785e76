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
