//go:build linux

package ruleset

import (
	"time"

	"github.com/snatrace/snatrace/nftnl"
)

// Observe records a commit the watcher's monitor reported.
func (cc *ChainCache) Observe(c nftnl.Commit) {
	if cc == nil {
		return
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.next != nil {
		close(cc.next)
		cc.next = nil
	}
	if !cc.ok {
		return
	}
	if c.ChangesChains() || c.Gen != cc.gen+1 {
		// Let the list go now: the next read makes its own, and on a
		// 300,000-rule node two lists at once are 100 MB.
		cc.ok, cc.list = false, nil
		return
	}
	cc.gen = c.Gen
}

// catchUp bounds how long a read waits for the watcher's monitor to report
// the commits that brought the ruleset to the generation it is reading
// (their events arrive just after the commit).
const catchUp = 10 * time.Millisecond

// valid returns the cached chains if they describe generation gen, waiting
// up to catchUp for commits the monitor has not reported yet.
func (cc *ChainCache) valid(gen uint32) (*chainList, bool) {
	if cc == nil {
		return nil, false
	}
	deadline := time.NewTimer(catchUp)
	defer deadline.Stop()
	for {
		cc.mu.Lock()
		ok, at, l := cc.ok, cc.gen, cc.list
		cc.mu.Unlock()
		switch {
		case !ok:
			return nil, false
		case at == gen:
			return l, true
		case int32(gen-at) < 0: // the cache is ahead of the read
			return nil, false
		}
		select {
		case <-cc.observed():
		case <-deadline.C:
			return nil, false
		}
	}
}

// observed returns a channel that receives after the next Observe.
func (cc *ChainCache) observed() <-chan struct{} {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.next == nil {
		cc.next = make(chan struct{})
	}
	return cc.next
}

// remember stores the chain list of a full read at generation gen, unless
// the cache already follows a later generation.
func (cc *ChainCache) remember(l *chainList, gen uint32) {
	if cc == nil {
		return
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.ok && int32(cc.gen-gen) > 0 {
		return
	}
	cc.list, cc.gen, cc.ok, cc.size = l, gen, true, len(l.chains)
}

// sizeHint is the number of chains the last list held (0 without one).
func (cc *ChainCache) sizeHint() int {
	if cc == nil {
		return 0
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.size
}
