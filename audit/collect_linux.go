//go:build linux

package audit

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/kernel"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/tsoffset"
)

// ReadConntrack reads the conntrack counters of the network namespace ns
// (nil: the caller's), twice interval apart when interval > 0. The caller's
// own namespace is read from /proc (no privilege needed) and falls back to
// ctnetlink; another namespace is read through ctnetlink (CAP_NET_ADMIN).
func ReadConntrack(ctx context.Context, ns *netns.NS, interval time.Duration, sleep Sleeper) (*Conntrack, error) {
	read := func() (ctstat.Snapshot, error) {
		if ns == nil {
			if s, err := ctstat.ReadProc(ctstat.ProcPath); err == nil {
				return s, nil
			}
		}
		return ctstat.ReadNetlink(ns)
	}
	first, err := read()
	if err != nil {
		return nil, fmt.Errorf("reading conntrack counters: %w", err)
	}
	c := &Conntrack{Now: first}
	if g, err := ctstat.ReadNetlinkGlobal(ns); err == nil && g.Max > 0 {
		c.Max = g.Max
	} else if m, err := ctstat.ReadMaxIn(ns); err == nil {
		c.Max = m
	}
	if interval <= 0 {
		return c, nil
	}
	start := time.Now()
	if err := sleep(ctx, interval); err != nil {
		return nil, fmt.Errorf("waiting for the counter interval: %w", err)
	}
	second, err := read()
	if err != nil {
		return nil, fmt.Errorf("reading conntrack counters: %w", err)
	}
	c.Now, c.Delta = second, ctstat.Delta(first, second)
	c.Interval = time.Since(start).Round(time.Millisecond)
	if c.Interval < interval {
		c.Interval = interval
	}
	return c, nil
}

// KernelTSOffsets says how the running kernel offsets TCP timestamps: by
// probing it (tsoffset.Probe, in a throwaway namespace: CAP_SYS_ADMIN),
// else from its version and `uname -v`. An override release (--kernel) is
// judged by its version alone.
func KernelTSOffsets(ctx context.Context, override string) *tsoffset.Detection {
	if override != "" {
		d := tsoffset.ByVersion(override)
		return &d
	}
	d, err := tsoffset.Probe(ctx)
	if err == nil {
		d.Reason = "probed: " + d.Reason
		return &d
	}
	release, _ := kernel.Release()
	version, _ := os.ReadFile("/proc/sys/kernel/version")
	d = tsoffset.ByKernel(release, strings.TrimSpace(string(version)))
	d.Reason += fmt.Sprintf(" (not probed: %v)", err)
	return &d
}
