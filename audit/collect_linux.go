//go:build linux

package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/snatrace/snatrace/ctstat"
	"golang.org/x/sys/unix"
)

// KernelRelease returns the running kernel's release ("6.18.44-fc").
func KernelRelease() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("reading the kernel release: %w", err)
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

// Sleeper waits d or until ctx ends; tests inject one that returns at once.
type Sleeper func(ctx context.Context, d time.Duration) error

// Sleep is the real Sleeper.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ReadConntrack reads the conntrack counters of the network namespace nsFD
// (0: the caller's), twice interval apart when interval > 0. The caller's own
// namespace is read from /proc (no privilege needed) and falls back to
// ctnetlink; another namespace is read through ctnetlink (CAP_NET_ADMIN).
func ReadConntrack(ctx context.Context, nsFD int, interval time.Duration, sleep Sleeper) (*Conntrack, error) {
	read := func() (ctstat.Snapshot, error) {
		if nsFD == 0 {
			if s, err := ctstat.ReadProc(ctstat.ProcPath); err == nil {
				return s, nil
			}
		}
		return ctstat.ReadNetlink(nsFD)
	}
	first, err := read()
	if err != nil {
		return nil, fmt.Errorf("reading conntrack counters: %w", err)
	}
	c := &Conntrack{Now: first}
	if g, err := ctstat.ReadNetlinkGlobal(nsFD); err == nil && g.Max > 0 {
		c.Max = g.Max
	} else if m, err := ctstat.ReadMax(ctstat.MaxPath); err == nil {
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
