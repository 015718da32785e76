package lab

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

var (
	errTimedOut = errors.New("connection timed out")
	errReset    = errors.New("connection reset by peer")
)

var t0 = time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// TestPairRejections: the cases the lab meets, among them the one where
// giving a rejection to the latest-started connection (the lab's pairing
// before) spends the window a later rejection needed.
func TestPairRejections(t *testing.T) {
	cases := []struct {
		name      string
		ws        []pawsWindow
		times     []int // ms
		got       []int
		unmatched int
	}{
		{"latest-started would take the short window's rejection",
			[]pawsWindow{{at(0), at(1200), 1}, {at(500), at(3000), 1}}, []int{600, 2000}, []int{1, 1}, 0},
		{"a budget caps a window", []pawsWindow{{at(0), at(5000), 2}}, []int{10, 1010, 3010}, []int{2}, 1},
		{"before every window", []pawsWindow{{at(100), at(200), 1}}, []int{50}, []int{0}, 1},
		{"after every window", []pawsWindow{{at(100), at(200), 1}}, []int{250}, []int{0}, 1},
		{"unsorted times", []pawsWindow{{at(0), at(100), 1}, {at(1000), at(1100), 1}}, []int{1050, 50}, []int{1, 1}, 0},
		{"no windows", nil, []int{1, 2}, []int{}, 2},
	}
	for _, c := range cases {
		var times []time.Time
		for _, ms := range c.times {
			times = append(times, at(ms))
		}
		got, unmatched := pairRejections(c.ws, times)
		if unmatched != c.unmatched || len(got) != len(c.got) {
			t.Errorf("%s: got %v, %d unmatched; want %v, %d", c.name, got, unmatched, c.got, c.unmatched)
			continue
		}
		for i := range got {
			if got[i] != c.got[i] {
				t.Errorf("%s: got %v; want %v", c.name, got, c.got)
				break
			}
		}
	}
}

// TestPairRejectionsMaximal: on random instances the greedy matches as
// many rejections as a maximum bipartite matching (augmenting paths) does.
func TestPairRejectionsMaximal(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 20000; n++ {
		ws := make([]pawsWindow, rnd.IntN(6))
		for i := range ws {
			from := rnd.IntN(100)
			ws[i] = pawsWindow{at(from), at(from + rnd.IntN(60)), 1 + rnd.IntN(3)}
		}
		times := make([]time.Time, rnd.IntN(10))
		for i := range times {
			times[i] = at(rnd.IntN(170))
		}
		want := len(times) - maxMatching(ws, times)
		got, unmatched := pairRejections(ws, append([]time.Time(nil), times...))
		if unmatched != want {
			t.Fatalf("windows %v, times %v: %d unmatched, a maximum matching leaves %d", ws, times, unmatched, want)
		}
		total := 0
		for i, g := range got {
			if g > ws[i].budget {
				t.Fatalf("window %d got %d, budget %d", i, g, ws[i].budget)
			}
			total += g
		}
		if total+unmatched != len(times) {
			t.Fatalf("%d matched + %d unmatched != %d rejections", total, unmatched, len(times))
		}
	}
}

// maxMatching is the size of a maximum matching of times to window slots
// (a window of budget b is b slots), by augmenting paths.
func maxMatching(ws []pawsWindow, times []time.Time) int {
	var slots []int // window of each slot
	for i, w := range ws {
		for k := 0; k < w.budget; k++ {
			slots = append(slots, i)
		}
	}
	owner := make([]int, len(slots))
	for i := range owner {
		owner[i] = -1
	}
	var try func(p int, seen []bool) bool
	try = func(p int, seen []bool) bool {
		for s, w := range slots {
			if seen[s] || times[p].Before(ws[w].from) || times[p].After(ws[w].to) {
				continue
			}
			seen[s] = true
			if owner[s] < 0 || try(owner[s], seen) {
				owner[s] = p
				return true
			}
		}
		return false
	}
	n := 0
	for p := range times {
		if try(p, make([]bool, len(slots))) {
			n++
		}
	}
	return n
}

// TestWindowOf: a connection that never connected may have had every SYN
// rejected, its last too; one that connected, all but its last.
func TestWindowOf(t *testing.T) {
	cases := []struct {
		name   string
		a      attempt
		ok     bool
		budget int
	}{
		{"connected", attempt{start: at(0), latency: time.Second, retrans: 2}, true, 2},
		{"handshake timed out", attempt{start: at(0), latency: 8 * time.Second, retrans: 5, err: errTimedOut}, true, 6},
		{"failed after the handshake", attempt{start: at(0), latency: time.Second, retrans: 1, err: fmt.Errorf("%w: %w", errAfterHandshake, errReset)}, true, 1},
		{"not delayed", attempt{start: at(0), latency: time.Millisecond}, false, 0},
	}
	for _, c := range cases {
		w, ok := windowOf(c.a)
		if ok != c.ok || w.budget != c.budget {
			t.Errorf("%s: window %v, %v; want budget %d, %v", c.name, w, ok, c.budget, c.ok)
			continue
		}
		if ok && (!w.from.Equal(at(0).Add(-pawsSlack)) || !w.to.Equal(at(0).Add(c.a.latency+pawsSlack))) {
			t.Errorf("%s: window %v..%v", c.name, w.from, w.to)
		}
	}
}
