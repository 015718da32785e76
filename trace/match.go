package trace

import "time"

// Delayed is a client connection that needed a SYN retransmission: its
// original tuple (pod ip:port -> dst:port) and when it sent its first SYN.
type Delayed struct {
	Orig  Tuple
	Start time.Time
}

// MatchResult pairs SNAT-clash drops with delayed connections.
type MatchResult struct {
	// Attributed counts SNAT-clash events that match a delayed connection.
	// A connection whose retransmitted SYN lost the race again matches twice.
	Attributed int
	// Unmatched are the delayed connections no SNAT-clash event explains.
	Unmatched []Delayed
	// Extra are SNAT-clash events that match no delayed connection.
	Extra []Event
}

// Match pairs events with delayed connections: an SNAT-clash event matches a
// connection with the same original tuple whose first SYN was sent at most
// slack after the drop and at most window before it (the drop of a
// retransmitted SYN comes 1 s, 3 s... after the start). Other drops are
// ignored.
func Match(delayed []Delayed, events []Event, window, slack time.Duration) MatchResult {
	byTuple := make(map[Tuple][]int, len(delayed))
	for i, d := range delayed {
		byTuple[d.Orig] = append(byTuple[d.Orig], i)
	}
	hit := make([]bool, len(delayed))
	var r MatchResult
	for _, ev := range events {
		if ev.Kind != KindSNATClash {
			continue
		}
		found := false
		for _, i := range byTuple[ev.Orig] {
			d := ev.Time.Sub(delayed[i].Start)
			if d >= -slack && d <= window {
				hit[i], found = true, true
				break
			}
		}
		if found {
			r.Attributed++
		} else {
			r.Extra = append(r.Extra, ev)
		}
	}
	for i, d := range delayed {
		if !hit[i] {
			r.Unmatched = append(r.Unmatched, d)
		}
	}
	return r
}
