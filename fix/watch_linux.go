//go:build linux

package fix

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Watch applies the fix, then keeps it applied until ctx ends: it
// re-plans and re-applies when an nftables netlink event says the ruleset
// changed (within milliseconds) and every Interval (for iptables-legacy,
// which sends no events). It returns nil when ctx is cancelled; errors of a
// round are reported through OnEvent and the watch goes on.
func (f *Fixer) Watch(ctx context.Context, o WatchOptions) error {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.OnEvent == nil {
		o.OnEvent = func(Event) {}
	}
	events := make(chan struct{}, 1)
	lockEvents := make(chan struct{}, 1)
	if !o.NoMonitor {
		mon, err := f.monitor(ctx, events)
		if err != nil {
			return err
		}
		defer mon.Close()
		// iptables-legacy sends no netlink events, but its writers take the
		// xtables lock: a close of the lock file ends a write.
		if lw, err := watchLock(ctx, xtablesLock(), lockEvents); err == nil {
			defer lw.Close()
		}
	}
	round := func(trigger string, at time.Time) {
		_, res, err := f.ApplyFresh(ctx, o.Backup, 10)
		ev := Event{Time: time.Now(), Trigger: trigger}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			ev.Err = err.Error()
			o.OnEvent(ev)
			return
		}
		if len(res.Applied) == 0 {
			return
		}
		ev.Applied, ev.Replans, ev.Took = res.Applied, res.Replans, time.Since(at)
		o.OnEvent(ev)
	}
	round("start", time.Now())
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-events:
			at := time.Now()
			// Let the writer's burst of batches settle: a rewrite is often
			// a flush and a refill in separate transactions.
			settle(ctx, events, 2*time.Millisecond, 100*time.Millisecond)
			round("nftables", at)
		case <-lockEvents:
			at := time.Now()
			settle(ctx, lockEvents, 2*time.Millisecond, 100*time.Millisecond)
			round("xtables-lock", at)
		case <-tick.C:
			round("interval", time.Now())
		}
	}
}

// settle waits until no event came for quiet, or max passed.
func settle(ctx context.Context, events <-chan struct{}, quiet, max time.Duration) {
	deadline := time.NewTimer(max)
	defer deadline.Stop()
	for {
		q := time.NewTimer(quiet)
		select {
		case <-ctx.Done():
			q.Stop()
			return
		case <-deadline.C:
			q.Stop()
			return
		case <-events:
			q.Stop()
		case <-q.C:
			return
		}
	}
}

// monitor subscribes to nftables ruleset events (NFNLGRP_NFTABLES) of the
// namespace and signals events on each batch of them. Closing the returned
// connection stops it.
func (f *Fixer) monitor(ctx context.Context, events chan<- struct{}) (*netlink.Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: f.nsFd()})
	if err != nil {
		return nil, fmt.Errorf("opening the nftables monitor: %w", err)
	}
	if err := c.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		c.Close()
		return nil, fmt.Errorf("joining the nftables event group: %w", err)
	}
	// Events are only a signal to re-read: losing some to a full buffer
	// (ENOBUFS) is fine, it is reported as an event too.
	_ = c.SetOption(netlink.NoENOBUFS, false)
	go func() {
		for {
			msgs, err := c.Receive()
			if ctx.Err() != nil {
				return
			}
			commit := errors.Is(err, unix.ENOBUFS) // lost events: re-read to be safe
			if err != nil && !commit {
				return // closed; the periodic re-read goes on
			}
			for _, m := range msgs {
				// Every committed transaction ends with NFT_MSG_NEWGEN.
				commit = commit || uint16(m.Header.Type)&0xff == unix.NFT_MSG_NEWGEN
			}
			if !commit {
				continue
			}
			select {
			case events <- struct{}{}:
			default:
			}
		}
	}()
	go func() {
		<-ctx.Done()
		c.Close()
	}()
	return c, nil
}

// xtablesLock is the lock file iptables writers take (XTABLES_LOCKFILE
// overrides it, as in iptables itself).
func xtablesLock() string {
	if p := os.Getenv("XTABLES_LOCKFILE"); p != "" {
		return p
	}
	return "/run/xtables.lock"
}

// watchLock signals events each time a process closes path (inotify
// IN_CLOSE): an iptables-legacy writer has finished. The lock file is
// shared by every network namespace of the mount namespace, so an event is
// only a hint to re-read.
func watchLock(ctx context.Context, path string, events chan<- struct{}) (*os.File, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", path, err)
	}
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_CLOSE_WRITE|unix.IN_CLOSE_NOWRITE); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watching %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), "inotify "+path)
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := f.Read(buf); err != nil || ctx.Err() != nil {
				return
			}
			select {
			case events <- struct{}{}:
			default:
			}
		}
	}()
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	return f, nil
}
