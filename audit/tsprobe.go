package audit

import (
	"context"
	"sync"

	"github.com/snatrace/snatrace/tsoffset"
)

// StartKernelTSOffsets runs KernelTSOffsets beside whatever the caller
// does next (the probe takes about 50 ms, most of it waiting between its
// SYNs) and returns what waits for its result, the same on every call.
// The caller must call it before it returns: the probe deletes its
// throwaway namespace when it ends, and an exiting process would leave
// it behind.
func StartKernelTSOffsets(ctx context.Context, override string) func() *tsoffset.Detection {
	done := make(chan *tsoffset.Detection, 1)
	go func() { done <- KernelTSOffsets(ctx, override) }()
	return sync.OnceValue(func() *tsoffset.Detection { return <-done })
}
