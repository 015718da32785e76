//go:build !linux

package audit

import (
	"context"
	"errors"
	"time"

	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/tsoffset"
)

// ReadConntrack reads conntrack counters; it needs Linux.
func ReadConntrack(ctx context.Context, ns *netns.NS, interval time.Duration, sleep Sleeper) (*Conntrack, error) {
	return nil, errors.New("reading the kernel needs Linux")
}

// KernelTSOffsets judges an override release by its version; there is no
// running Linux kernel to probe.
func KernelTSOffsets(ctx context.Context, override string) *tsoffset.Detection {
	d := tsoffset.ByVersion(override)
	return &d
}
