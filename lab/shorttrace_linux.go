//go:build linux

package lab

import (
	"context"
	"sort"
	"time"

	"github.com/snatrace/snatrace/trace"
)

// traceServers attaches a tracer to every server namespace of a short
// session that reports the SYNs its TIME_WAIT sockets reject by PAWS; their
// events join the node tracer's.
func (s *Session) traceServers(ctx context.Context) error {
	st := s.trace
	for _, srv := range s.Topo.Servers {
		ino, err := srv.NS.Inode()
		if err != nil {
			return err
		}
		t, err := trace.Start(ctx, trace.Options{NetNS: ino, PAWS: true, Buffer: 1 << 14})
		if err != nil {
			return err
		}
		st.servers = append(st.servers, t)
		st.readers.Add(1)
		go func() {
			defer st.readers.Done()
			for ev := range t.Events() {
				st.mu.Lock()
				st.events = append(st.events, ev)
				st.mu.Unlock()
			}
		}()
	}
	return nil
}

// tracedPAWS is how many PAWS rejections at TIME_WAIT the servers' tracers
// report for a round whose counters are d: those the servers counted, where
// the tracers see them (6.16+, where the counter is PAWSTimewait too); 0
// otherwise.
func (s *Session) tracedPAWS(d PAWSCounters) uint64 {
	if len(s.trace.servers) == 0 || !s.trace.servers[0].PAWS() || d.Counter != "PAWSTimewait" {
		return 0
	}
	return d.TimewaitRejected
}

// matchPAWS pairs a short round's TIME_WAIT rejections with its delayed
// connections: by server port (each mode has its own) and time, each
// rejection to the latest delayed connection that started before it, at
// most as many as it retransmitted. The NAT port of a connection is not
// known to the lab; at most one connection per CPU is in flight at once.
func (s *Session) matchPAWS(atts []attempt, events []trace.Event) *PAWSTrace {
	p := &PAWSTrace{}
	if len(s.trace.servers) > 0 && !s.trace.servers[0].PAWS() {
		p.Note = "this kernel does not show the drop (no TCP_RFC7323_TW_PAWS drop reason before 6.16)"
		return p
	}
	var delayed []int
	for i, a := range atts {
		if a.retrans > 0 {
			delayed = append(delayed, i)
		}
	}
	sort.Slice(delayed, func(i, j int) bool { return atts[delayed[i]].start.Before(atts[delayed[j]].start) })
	left := make(map[int]int, len(delayed))
	for _, i := range delayed {
		left[i] = atts[i].retrans
	}
	got := map[int]bool{}
	for _, ev := range events {
		if ev.Kind != trace.KindPAWSTimewait || ev.Orig.Dst.Port() != s.d.dport {
			continue
		}
		p.Seen++
		if i, ok := latestBefore(atts, delayed, left, ev.Time, s.cfg.Timeout); ok {
			left[i]--
			got[i] = true
			p.Attributed++
			continue
		}
		p.Extra++
	}
	p.Connections = len(got)
	return p
}

// latestBefore finds the delayed attempt (indexes sorted by start) with
// retransmissions left that started last before t, within window.
func latestBefore(atts []attempt, delayed []int, left map[int]int, t time.Time, window time.Duration) (int, bool) {
	const slack = 5 * time.Millisecond // the tracer's clock against the lab's
	k := sort.Search(len(delayed), func(j int) bool { return atts[delayed[j]].start.After(t.Add(slack)) })
	for j := k - 1; j >= 0; j-- {
		i := delayed[j]
		if t.Sub(atts[i].start) > window {
			break
		}
		if left[i] > 0 {
			return i, true
		}
	}
	return 0, false
}
