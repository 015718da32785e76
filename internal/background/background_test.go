package background

import (
	"sync/atomic"
	"testing"
)

// TestStart: f runs beside the caller (it waits for the caller to go on),
// once, and every wait returns its result.
func TestStart(t *testing.T) {
	var runs atomic.Int32
	goOn := make(chan struct{})
	wait := Start(func() int {
		<-goOn // blocks until the caller, back from Start, lets it finish
		return int(runs.Add(1)) * 7
	})
	close(goOn)
	for i := 0; i < 3; i++ {
		if got := wait(); got != 7 {
			t.Fatalf("wait %d: %d, want 7", i, got)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("f ran %d times, want once", n)
	}
}
