//go:build linux

package lab

import (
	"testing"
	"time"

	"github.com/snatrace/snatrace/trace"
)

// since waits for PAWS events the servers counted but the ring buffer has
// not delivered yet (up to a second), and not at all when none is owed.
func TestSinceWaitsForCountedPAWS(t *testing.T) {
	st := &sessionTrace{events: []trace.Event{{Kind: trace.KindSNATClash}}}
	m := st.mark()
	go func() {
		time.Sleep(300 * time.Millisecond) // well past the 50 ms grace
		st.mu.Lock()
		st.events = append(st.events, trace.Event{Kind: trace.KindPAWSTimewait})
		st.mu.Unlock()
	}()
	start := time.Now()
	if evs := st.since(m, 1); len(evs) != 1 || evs[0].Kind != trace.KindPAWSTimewait {
		t.Fatalf("since(mark, 1) = %+v, want the late PAWS event", evs)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v: it should return once the event is there", d)
	}
	start = time.Now()
	if evs := st.since(st.mark(), 0); len(evs) != 0 {
		t.Errorf("since with nothing owed: %+v", evs)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("since with nothing owed took %v", d)
	}
	// Owed events that never come end the wait after a second, not never.
	start = time.Now()
	st.since(st.mark(), 5)
	if d := time.Since(start); d < time.Second || d > 3*time.Second {
		t.Errorf("waiting for events that never come took %v, want about 1 s", d)
	}
}
