//go:build linux

package lab

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/snatrace/snatrace/trace"
)

// sessionTrace collects the tracer's events for the rounds of a session.
type sessionTrace struct {
	t      *trace.Tracer
	mu     sync.Mutex
	events []trace.Event
	done   chan struct{}
	// servers are a short session's tracers of the server namespaces,
	// reporting SYNs their TIME_WAIT sockets reject by PAWS (shorttrace_linux.go).
	servers []*trace.Tracer
	readers sync.WaitGroup
}

// EnableTrace attaches the eBPF tracer to the node namespace; every later
// round's Result then carries a TraceResult. It fails with an error wrapping
// trace.ErrMissing when BTF, a capability or a tracepoint is missing.
func (s *Session) EnableTrace(ctx context.Context) error {
	ino, err := s.Node().Inode()
	if err != nil {
		return err
	}
	t, err := trace.Start(ctx, trace.Options{NetNS: ino, Buffer: 1 << 14})
	if err != nil {
		return err
	}
	st2 := &sessionTrace{t: t, done: make(chan struct{})}
	go func() {
		defer close(st2.done)
		for ev := range t.Events() {
			st2.mu.Lock()
			st2.events = append(st2.events, ev)
			st2.mu.Unlock()
		}
	}()
	s.trace = st2
	if s.cfg.Workload.Name == Short {
		return s.traceServers(ctx)
	}
	return nil
}

// mark returns the number of events collected so far.
func (st *sessionTrace) mark() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.events)
}

// since returns the events collected after mark m, after a short grace for
// those still on their way from the ring buffer, and, up to a second more,
// until they hold as many PAWS rejections at TIME_WAIT as the servers
// counted in the round (paws): under load an event can take longer than
// the grace, and one that comes after a session's last round would be
// lost. A counter that holds more than the tracer reports (late segments
// of closed connections, or a rejection the kernel counted without the
// drop reason: PAWSTrace.Unseen) costs that second, no more.
func (st *sessionTrace) since(m int, paws uint64) []trace.Event {
	time.Sleep(50 * time.Millisecond)
	for deadline := time.Now().Add(time.Second); ; time.Sleep(5 * time.Millisecond) {
		st.mu.Lock()
		evs := append([]trace.Event(nil), st.events[m:]...)
		st.mu.Unlock()
		if countPAWS(evs) >= paws || time.Now().After(deadline) {
			return evs
		}
	}
}

// countPAWS counts the PAWS rejections at TIME_WAIT among evs.
func countPAWS(evs []trace.Event) uint64 {
	var n uint64
	for _, ev := range evs {
		if ev.Kind == trace.KindPAWSTimewait {
			n++
		}
	}
	return n
}

func (st *sessionTrace) close() error {
	err := st.t.Close()
	for _, t := range st.servers {
		err = errors.Join(err, t.Close())
	}
	<-st.done
	st.readers.Wait()
	return err
}

// matchTrace pairs one round's events with its delayed attempts.
func (s *Session) matchTrace(atts []attempt, events []trace.Event) TraceResult {
	var delayed []trace.Delayed
	for _, a := range atts {
		if a.retrans == 0 {
			continue
		}
		srv := s.Topo.Servers[a.server]
		delayed = append(delayed, trace.Delayed{
			Orig: trace.Tuple{
				Src: netip.AddrPortFrom(s.Topo.Pods[a.pod].Addr, a.localPort),
				Dst: netip.AddrPortFrom(srv.Addr, s.d.dport),
			},
			Start: a.start,
		})
	}
	// A drop comes at most a few ms after the first SYN, or 1 s, 3 s... after
	// it for a retransmission; the timeout bounds them all.
	return traceResult(s.trace.t.Mode(), delayed, events, s.cfg.Timeout)
}

// traceResult pairs events with the delayed connections or queries whose
// drops came at most window after their start.
func traceResult(mode trace.Mode, delayed []trace.Delayed, events []trace.Event, window time.Duration) TraceResult {
	m := trace.Match(delayed, events, window, 5*time.Millisecond)
	tr := TraceResult{Attributed: m.Attributed, Unmatched: len(m.Unmatched), Extra: len(m.Extra), Mode: string(mode)}
	for _, ev := range events {
		switch {
		case ev.Kind == trace.KindPAWSTimewait:
			// The servers' side (matchPAWS), not a netfilter drop.
		case ev.Kind.Resolved():
			tr.Resolved++
		case ev.Kind != trace.KindSNATClash:
			tr.OtherDrops++
		}
	}
	return tr
}
