//go:build !linux

package audit

import (
	"context"
	"errors"
	"time"

	"github.com/snatrace/snatrace/netns"
)

// ReadConntrack reads conntrack counters; it needs Linux.
func ReadConntrack(ctx context.Context, ns *netns.NS, interval time.Duration, sleep Sleeper) (*Conntrack, error) {
	return nil, errors.New("reading the kernel needs Linux")
}
