//go:build linux

package lab

import (
	"context"
	"errors"
	"runtime"
	"time"

	"github.com/snatrace/snatrace/kernel"
	"github.com/snatrace/snatrace/natrule"
)

// Run builds a topology, runs cfg's workload under every mode and backend in
// alternating rounds, removes everything it made, and returns the report. A
// cancelled ctx (SIGINT) ends the run early: the partial report comes back
// with ErrInterrupted. Run checks privileges, binaries and kernel features
// before it builds anything; a run that fails midway still reports what it
// measured.
func Run(ctx context.Context, cfg Config) (rep *Report, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s, err := Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := s.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		if rep != nil {
			rep.Seconds = time.Since(s.t0).Seconds()
		}
	}()
	if cfg.Trace {
		if err := s.EnableTrace(ctx); err != nil {
			return nil, err
		}
	}
	r := newRun(cfg, s)
	if cfg.Workload.Name == Short {
		r.rep.TSOffsets = probeTSOffsets(ctx)
	}
	err = r.loop(ctx)
	r.finish()
	var cut *CutError
	switch {
	case errors.As(err, &cut), err == nil && ctx.Err() != nil:
		r.rep.Stopped = "interrupted"
		return r.rep, ErrInterrupted
	case err != nil:
		r.rep.Stopped = "error"
		return r.rep, err
	}
	return r.rep, nil
}

// variant is one NAT mode through one backend.
type variant struct {
	mode    natrule.Mode
	backend natrule.Backend
}

// run is one Run in progress: the variants, their results and the clock.
type run struct {
	cfg          Config
	s            *Session
	vs           []variant
	rep          *Report
	trafficStart time.Time
}

func newRun(cfg Config, s *Session) *run {
	r := &run{cfg: cfg, s: s, trafficStart: time.Now()}
	for _, m := range cfg.Modes {
		for _, b := range cfg.Backends {
			r.vs = append(r.vs, variant{m, b})
		}
	}
	release, err := kernel.Release()
	if err != nil {
		release = "unknown"
	}
	r.rep = NewReport(cfg, release, runtime.NumCPU())
	return r
}

// loop alternates the variants round by round until every one has its
// connections, the duration is over, or one reached --until.
func (r *run) loop(ctx context.Context) error {
	for i := 0; ; i = (i + 1) % len(r.vs) {
		if ctx.Err() != nil {
			return nil
		}
		if i == 0 && r.cfg.Duration > 0 && time.Since(r.trafficStart) >= r.cfg.Duration {
			r.rep.Stopped = "duration"
			return nil
		}
		if r.allDone() {
			return nil
		}
		res := r.rep.Results[i]
		n := min(r.cfg.RoundSize, r.cfg.Connections-res.Connections)
		if n <= 0 {
			continue
		}
		hit, err := r.round(ctx, i, n, r.untilLeft(res))
		if err != nil {
			return err
		}
		if hit || (r.cfg.Until > 0 && res.Conntrack.InsertFailed >= uint64(r.cfg.Until)) {
			r.rep.Stopped = "until"
			return r.topUp(ctx, res.Connections)
		}
	}
}

func (r *run) allDone() bool {
	for _, res := range r.rep.Results {
		if res.Connections < r.cfg.Connections {
			return false
		}
	}
	return true
}

// untilLeft is how many more insert failures end res's round, 0 for no
// bound.
func (r *run) untilLeft(res *Result) uint64 {
	if r.cfg.Until <= 0 {
		return 0
	}
	return uint64(r.cfg.Until) - min(uint64(r.cfg.Until), res.Conntrack.InsertFailed)
}

// topUp gives every variant as many connections as the one that reached
// --until, so the comparison stays fair.
func (r *run) topUp(ctx context.Context, n int) error {
	for j, other := range r.rep.Results {
		for ctx.Err() == nil && other.Connections < n {
			if _, err := r.round(ctx, j, min(r.cfg.RoundSize, n-other.Connections), 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// round runs n connections under variant i; until > 0 ends it once the
// node has counted that many more insert failures.
func (r *run) round(ctx context.Context, i, n int, until uint64) (bool, error) {
	v := r.vs[i]
	if err := r.s.Install(ctx, v.mode, v.backend); err != nil {
		return false, err
	}
	res := r.rep.Results[i]
	before := res.Connections
	if r.cfg.Workload.Name == Short {
		r.s.d.dport, r.s.podBase = r.cfg.shortPort(i), i*r.cfg.Pods
	}
	hit, err := r.s.round(ctx, res, n, until)
	var cut *CutError
	if errors.As(err, &cut) && cut.Sent > 0 {
		// A round cut before its first connect() was never in flight.
		r.rep.Incomplete = &IncompleteRound{NAT: res.NAT, Backend: res.Backend, Connections: cut.Sent}
	}
	if err != nil {
		return false, err
	}
	sent := res.Connections - before
	r.rep.Workload.Connections += sent
	if r.cfg.Workload.Name != Steady && r.cfg.Workload.Name != Short {
		r.rep.Workload.Bursts += (sent + r.cfg.burstSize() - 1) / r.cfg.burstSize()
	}
	if r.cfg.Progress != nil {
		done := 0
		for _, x := range r.rep.Results {
			done += x.Connections
		}
		r.cfg.Progress(Progress{Done: done, Total: r.cfg.Connections * len(r.vs), Clashes: res.Conntrack.InsertFailed, Mode: v.mode.String()})
	}
	return hit, nil
}

// finish computes the report's figures from what was measured.
func (r *run) finish() {
	r.rep.TrafficSeconds = time.Since(r.trafficStart).Seconds()
	if r.rep.TrafficSeconds > 0 {
		r.rep.ConnectRate = float64(r.rep.Workload.Connections) / r.rep.TrafficSeconds
	}
	r.rep.Finish()
}
