//go:build linux

package fix

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/nftnl"
	"github.com/snatrace/snatrace/ruleset"
)

// Watch applies the fix, then keeps it applied until ctx ends: it re-plans
// and re-applies when an nftables netlink event says the ruleset changed
// (within milliseconds), when an iptables writer released the xtables lock
// and the legacy nat tables really changed, and every Interval (a safety
// net). It returns nil when ctx is cancelled, and an error when it can no
// longer watch (the nftables monitor failed): a watch that has gone deaf
// must not look alive. Errors of a single round are reported through
// OnEvent and the watch goes on.
func (f *Fixer) Watch(ctx context.Context, o WatchOptions) error {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.OnEvent == nil {
		o.OnEvent = func(Event) {}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The watch's reads share a chain list kept from its commits.
	wf := &Fixer{cfg: f.cfg, run: f.run, chains: &ruleset.ChainCache{}}
	w := &watch{f: wf, o: o, nft: make(chan struct{}, 1), lock: make(chan struct{}, 1), died: make(chan error, 1)}
	if !o.NoMonitor {
		if err := w.start(ctx); err != nil {
			return err
		}
	}
	return w.loop(ctx)
}

// watch is one Watch in progress.
type watch struct {
	f      *Fixer
	o      WatchOptions
	nft    chan struct{} // an nftables commit
	lock   chan struct{} // a close of the xtables lock file
	died   chan error    // the monitor's end
	legacy [32]byte      // digest of the legacy nat tables at the last round
	// last is the rules the last round read: an nftables commit that
	// cannot have changed them wakes nothing (nil: every commit wakes).
	last atomic.Pointer[ruleset.Ruleset]
}

// start subscribes to nftables events and watches the xtables lock.
func (w *watch) start(ctx context.Context) error {
	mon, err := nftnl.NewMonitor(w.f.cfg.NS)
	if err != nil {
		return err
	}
	go func() {
		w.died <- mon.RunCommits(ctx, func(c nftnl.Commit) {
			w.f.chains.Observe(c)
			if !w.last.Load().Affected(c) {
				return // another table's or chain's commit: kube-proxy's service churn
			}
			select {
			case w.nft <- struct{}{}:
			default:
			}
		})
	}()
	// iptables-legacy sends no netlink events, but its writers take the
	// xtables lock: a close of the lock file ends a write. The lock is
	// shared by every namespace of the mount namespace, so an event is
	// only a hint.
	if !w.f.cfg.SkipLegacy {
		if err := ruleset.WatchXtablesLock(ctx, w.f.lockPath(), w.lock); err != nil {
			return err
		}
	}
	return nil
}

func (w *watch) loop(ctx context.Context) error {
	w.round(ctx, "start", time.Now(), false)
	tick := time.NewTicker(w.o.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.died:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("the nftables monitor stopped, so the watch no longer sees changes: %w", err)
		case <-w.nft:
			at := time.Now()
			// Let the writer's burst of batches settle: a rewrite is often
			// a flush and a refill in separate transactions.
			settle(ctx, w.nft, 2*time.Millisecond, 100*time.Millisecond)
			w.round(ctx, "nftables", at, false)
		case <-w.lock:
			at := time.Now()
			settle(ctx, w.lock, 2*time.Millisecond, 100*time.Millisecond)
			if w.legacyChanged(ctx) {
				w.round(ctx, "xtables-lock", at, true)
			}
		case <-tick.C:
			w.round(ctx, "interval", time.Now(), false)
		}
	}
}

// round plans and applies, and reports what it did. digested says the
// legacy tables were just read for their digest.
func (w *watch) round(ctx context.Context, trigger string, at time.Time, digested bool) {
	// Remember the legacy tables as the round finds them: a rewrite during
	// the round then differs at the next look and gets its own round (the
	// round's own change does too, once, which costs one empty round).
	if !digested && !w.f.cfg.SkipLegacy {
		w.legacyChanged(ctx)
	}
	p, res, err := w.f.ApplyFresh(ctx, w.o.Backup, 10)
	ev := Event{Time: time.Now(), Trigger: trigger}
	if p != nil {
		w.last.Store(p.read)
	} else {
		w.last.Store(nil)
	}
	if err != nil {
		// A round that changed rules before it failed reports them with
		// its error; one stopped after its change (the verify cut short)
		// reports the change alone: it is in the kernel and the backup.
		if res != nil {
			ev.Applied, ev.Replans, ev.Took = res.Applied, res.Replans, time.Since(at)
		}
		if ctx.Err() == nil {
			ev.Err = err.Error()
		} else if len(ev.Applied) == 0 {
			return // stopped: not a failure, and nothing changed
		}
		w.o.OnEvent(ev)
		return
	}
	if len(res.Applied) == 0 {
		return
	}
	ev.Applied, ev.Replans, ev.Took = res.Applied, res.Replans, time.Since(at)
	w.o.OnEvent(ev)
}

// legacyChanged reports whether the iptables-legacy nat tables differ from
// the last look: most closes of the host-wide lock come from writers of
// other tables or other namespaces, and need no re-plan. The tables are
// read through the kernel interface (a fifth of a save's time at 100,000
// rules), unless Config.LegacyText. A read that fails counts as a change.
func (w *watch) legacyChanged(ctx context.Context) bool {
	h := sha256.New()
	for _, fam := range []ruleset.Family{natrule.IPv4, natrule.IPv6} {
		if w.f.legacyDirect(ctx) {
			if sum, err := w.f.directDigest(fam); err == nil {
				h.Write(binary.LittleEndian.AppendUint64(nil, sum))
				continue
			}
		}
		save, _, err := w.f.tools(ctx, natrule.IptablesLegacy, fam)
		if err != nil {
			continue
		}
		out, err := w.f.run.Run(ctx, command(save, "-t", "nat"))
		if err != nil {
			return true
		}
		h.Write(dropComments(out))
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	changed := sum != w.legacy
	w.legacy = sum
	return changed
}

// dropComments drops the comment lines of an iptables-save dump (they carry
// the time).
func dropComments(out []byte) []byte {
	var b []byte
	for len(out) > 0 {
		i := 0
		for i < len(out) && out[i] != '\n' {
			i++
		}
		line := out[:i]
		if i < len(out) {
			i++
		}
		if len(line) == 0 || line[0] != '#' {
			b = append(b, out[:i]...)
		}
		out = out[i:]
	}
	return b
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
