package lab

import (
	"errors"
	"sort"
	"time"
)

// errAfterHandshake marks a short connection that connected and then
// failed.
var errAfterHandshake = errors.New("after the handshake")

// pawsWindow is when a delayed connection's rejected SYNs can have reached
// the server: from its connect() to the end of its handshake (a rejection
// precedes the retransmission that follows it, and the last retransmission
// precedes the handshake's end), widened by the clocks' slack; budget is
// how many of its SYNs can have been rejected.
type pawsWindow struct {
	from, to time.Time
	budget   int
}

// windowOf returns the window of a, and false when a retransmitted no SYN.
// Each rejection cost a retransmission; a handshake that never completed
// may have had its last SYN rejected too.
func windowOf(a attempt) (pawsWindow, bool) {
	if a.retrans == 0 {
		return pawsWindow{}, false
	}
	w := pawsWindow{from: a.start.Add(-pawsSlack), to: a.start.Add(a.latency + pawsSlack), budget: a.retrans}
	if a.err != nil && !errors.Is(a.err, errAfterHandshake) {
		w.budget++
	}
	return w, true
}

// pawsSlack is how far the tracer's clock may be off the lab's.
const pawsSlack = 5 * time.Millisecond

// pairRejections pairs rejection times with windows so that as many
// rejections as possible fall in a window of their own, each window taking
// at most its budget. Taken in time order, a rejection goes to the open
// window that closes first: the greedy that finds a maximum matching of
// points to intervals (taking the latest-started window instead can spend
// a window a later rejection needed, leaving that one unmatched). It
// returns, per window, how many rejections it got, and how many were left
// unmatched. times is sorted in place.
func pairRejections(ws []pawsWindow, times []time.Time) (got []int, unmatched int) {
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	got = make([]int, len(ws))
	for _, t := range times {
		best := -1
		for i, w := range ws {
			if got[i] == w.budget || t.Before(w.from) || t.After(w.to) {
				continue
			}
			if best < 0 || w.to.Before(ws[best].to) {
				best = i
			}
		}
		if best < 0 {
			unmatched++
			continue
		}
		got[best]++
	}
	return got, unmatched
}
