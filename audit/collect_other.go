//go:build !linux

package audit

import (
	"context"
	"errors"
	"time"
)

var errNotLinux = errors.New("reading the kernel needs Linux")

// KernelRelease returns the running kernel's release; it needs Linux.
func KernelRelease() (string, error) { return "", errNotLinux }

// Sleeper waits d or until ctx ends.
type Sleeper func(ctx context.Context, d time.Duration) error

// Sleep is the real Sleeper.
func Sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// ReadConntrack reads conntrack counters; it needs Linux.
func ReadConntrack(ctx context.Context, nsFD int, interval time.Duration, sleep Sleeper) (*Conntrack, error) {
	return nil, errNotLinux
}
