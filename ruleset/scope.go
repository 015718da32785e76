package ruleset

import "sync"

// nftScope is what a live read of the nftables rules depended on: the
// chains whose rules it read (every chain source NAT can run in), the
// verdict maps it followed, and their tables. A commit that touches none of
// them cannot change the read's source-NAT rules (Ruleset.Affected), which
// lets a watcher skip re-reading on a node whose kube-proxy rewrites its
// service chains every second.
type nftScope struct {
	chains map[tableKey]bool // chain: the chain's name
	maps   map[tableKey]bool // chain: the map's name
	tables map[tableKey]bool // chain: ""
}

// ChainCache keeps the nftables chain list of a namespace between reads, for
// a watcher that also follows the namespace's commits (nftnl.Monitor). A
// read with a valid cache skips the chain dump, the one part of a read that
// grows with the whole ruleset rather than with the chains source NAT runs
// in (about 0.1 s for a kube-proxy table of 100,000 rules; the kernel
// resumes each part of a chain dump from the start). The list stays valid
// through commits that touch no chain or table; any other commit, a lost
// event or a gap in generations invalidates it until the next full read.
// It is safe for concurrent use.
type ChainCache struct {
	mu   sync.Mutex
	list *chainList // read-only once stored
	gen  uint32
	ok   bool
	next chan struct{} // closed by the next Observe
	// size is the number of chains of the last list: a read sizes its
	// dump's list by it rather than grow it from nothing.
	size int
}

// ScopeOnly returns a Ruleset holding only what Affected needs of rs. A
// watcher keeps it between reads instead of rs, whose chain list on a
// kube-proxy node holds 100,000 chains: kept, it would live beside the
// next read's own.
func (rs *Ruleset) ScopeOnly() *Ruleset {
	if rs == nil {
		return nil
	}
	return &Ruleset{scope: rs.scope}
}
