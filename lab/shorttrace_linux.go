//go:build linux

package lab

import (
	"context"
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
// rejection within a delayed connection's handshake, at most as many per
// connection as it can have had rejected (windowOf, pairRejections). The
// NAT port of a connection is not known to the lab. counted is what the
// servers counted in the round (tracedPAWS): the tracer's shortfall is
// Unseen.
func (s *Session) matchPAWS(atts []attempt, events []trace.Event, counted uint64) *PAWSTrace {
	p := &PAWSTrace{}
	if len(s.trace.servers) > 0 && !s.trace.servers[0].PAWS() {
		p.Note = "this kernel does not show the drop (no TCP_RFC7323_TW_PAWS drop reason before 6.16)"
		return p
	}
	var ws []pawsWindow
	for _, a := range atts {
		if w, ok := windowOf(a); ok {
			ws = append(ws, w)
		}
	}
	var times []time.Time
	for _, ev := range events {
		if ev.Kind == trace.KindPAWSTimewait && ev.Orig.Dst.Port() == s.d.dport {
			times = append(times, ev.Time)
		}
	}
	got, unmatched := pairRejections(ws, times)
	p.Seen, p.Extra = len(times), unmatched
	p.Attributed = p.Seen - unmatched
	if uint64(p.Seen) < counted {
		p.Unseen = int(counted) - p.Seen
	}
	for _, n := range got {
		if n > 0 {
			p.Connections++
		}
	}
	return p
}
