// Package background runs a function beside the caller's own work: a
// probe that mostly waits, or a tool's version asked while the kernel
// copies a table.
package background

import "sync"

// Start runs f on a goroutine of its own and returns what waits for its
// result, the same result on every call. A caller whose f must finish
// before the process exits (it deletes what it made on the way out) calls
// the wait before it returns, on every path.
func Start[T any](f func() T) (wait func() T) {
	done := make(chan T, 1)
	go func() { done <- f() }()
	return sync.OnceValue(func() T { return <-done })
}
