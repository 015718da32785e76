package trace

import (
	"testing"
	"time"
)

func TestMatch(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	a := Tuple{ap("10.77.0.10:20000"), ap("198.18.5.2:80")}
	b := Tuple{ap("10.77.0.11:20000"), ap("198.18.5.2:80")}
	c := Tuple{ap("10.77.0.12:20000"), ap("198.18.5.2:80")}
	clash := func(tup Tuple, at time.Duration) Event {
		return Event{Orig: tup, Time: t0.Add(at), Kind: KindSNATClash}
	}
	delayed := []Delayed{{a, t0}, {b, t0}, {c, t0.Add(10 * time.Second)}}
	events := []Event{
		clash(a, 100*time.Microsecond),
		clash(a, time.Second),                        // a's retransmitted SYN lost again
		clash(b, 5*time.Second),                      // outside the window: not b's
		clash(c, 10*time.Second-10*time.Millisecond), // within slack
		{Orig: b, Time: t0, Kind: KindOtherDrop},     // ignored
	}
	r := Match(delayed, events, 4*time.Second, 50*time.Millisecond)
	if r.Attributed != 3 {
		t.Errorf("attributed %d, want 3", r.Attributed)
	}
	if len(r.Unmatched) != 1 || r.Unmatched[0].Orig != b {
		t.Errorf("unmatched %v, want only %v", r.Unmatched, b)
	}
	if len(r.Extra) != 1 || r.Extra[0].Orig != b {
		t.Errorf("extra %v, want b's late drop", r.Extra)
	}
}
