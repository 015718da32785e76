//go:build linux

package ruleset

import (
	"context"
	"sync"
	"time"

	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/nftnl"
)

// overlaps follows the commits of a namespace while it is read, so that a
// read overlapped only by commits elsewhere — kube-proxy rewriting its
// service chains every second on a 100,000-rule node — is accepted instead
// of repeated until the ruleset stands still.
type overlaps struct {
	mu      sync.Mutex
	commits []nftnl.Commit
	lost    bool
	seen    chan struct{} // a commit arrived
	stop    func()
}

// maxOverlaps bounds the commits kept: more during one read is churn the
// read cannot be vouched for anyway.
const maxOverlaps = 1024

// watchOverlaps subscribes to ns's commits; nil when it cannot (the read
// then falls back to retrying until no commit overlaps it).
func watchOverlaps(ns *netns.NS) *overlaps {
	mon, err := nftnl.NewMonitor(ns)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	o := &overlaps{seen: make(chan struct{}, 1), stop: cancel}
	go mon.RunCommits(ctx, o.add)
	return o
}

func (o *overlaps) add(c nftnl.Commit) {
	o.mu.Lock()
	if len(o.commits) == maxOverlaps || c.Lost {
		o.lost = true
	} else {
		o.commits = append(o.commits, c)
	}
	o.mu.Unlock()
	select {
	case o.seen <- struct{}{}:
	default:
	}
}

// close stops the watcher without waiting for its socket to close: the
// kernel holds the close of a netfilter socket after a commit for a grace
// period, holding the commit lock (nftnl.Conn.Close), and the read it
// served is over. The watcher's goroutine ends within that time; add
// after close is harmless.
func (o *overlaps) close() {
	if o != nil {
		o.stop()
	}
}

// harmless reports whether every commit from generation before (excluded)
// to after touched neither the chain list nor anything d read. It waits up
// to a second for those commits' events; a missing one is not harmless.
func (o *overlaps) harmless(d *nftDump, before, after uint32) bool {
	if o == nil || before == after {
		return false
	}
	scope := d.scope()
	deadline := time.NewTimer(time.Second)
	defer deadline.Stop()
	for {
		o.mu.Lock()
		verdict, complete := o.judge(scope, before, after)
		o.mu.Unlock()
		if complete {
			return verdict
		}
		select {
		case <-o.seen:
		case <-deadline.C:
			return false
		}
	}
}

// judge checks the commits of generations before+1..after (o.mu held):
// complete is false while some have not arrived.
func (o *overlaps) judge(scope *nftScope, before, after uint32) (harmless, complete bool) {
	if o.lost {
		return false, true
	}
	need := after - before
	for _, c := range o.commits {
		if int32(c.Gen-before) <= 0 || int32(c.Gen-after) > 0 {
			continue
		}
		if c.ChangesChains() || scope.affects(c) {
			return false, true
		}
		need--
	}
	return true, need == 0
}
