package ruleset

import (
	"maps"
	"slices"
	"sync/atomic"

	"github.com/snatrace/snatrace/natrule"
)

// chainList is one dump of a namespace's nftables chains and what follows
// from the chains alone. It is read-only once made: a ChainCache shares it
// between the reads it serves, which then cost what the chains source NAT
// runs in cost, not what 36,000 chains do.
type chainList struct {
	chains   []Chain           // as dumped: Rules 0, Backend unset
	idx      map[tableKey]int  // index in chains by family, table and name
	bases    []int             // the base chains (Ruleset.bases)
	natBases []int             // the chains source NAT starts in (sourceNATHook)
	ipt      map[tableKey]bool // the tables iptables-nft made (iptablesNftTablesOf)
	// dormantNAT are the source-NAT base chains of dormant tables (flags
	// dormant), which the kernel does not run. No chain of a dormant
	// table is in chains: nothing downstream (the DNS path, fix) sees them.
	dormantNAT []Chain
	dormant    map[tableKey]bool // the dormant tables (Name "")
	// last is the Ruleset.Chains last made from the list (view).
	last atomic.Pointer[chainsView]
}

// newChainList indexes chains, which it keeps; dormant are the tables
// whose chains the kernel does not run (Name "").
func newChainList(chains []Chain, dormant map[tableKey]bool) *chainList {
	l := &chainList{dormant: dormant}
	if len(dormant) > 0 {
		chains = slices.DeleteFunc(chains, func(c Chain) bool {
			if !dormant[tableKey{c.Family, c.Table, ""}] {
				return false
			}
			if sourceNATHook(c) {
				l.dormantNAT = append(l.dormantNAT, c)
			}
			return true
		})
	}
	l.chains, l.idx, l.ipt = chains, indexChains(chains), iptablesNftTablesOf(chains)
	for i, c := range chains {
		if c.Hook != "" {
			l.bases = append(l.bases, i)
		}
		if sourceNATHook(c) {
			l.natBases = append(l.natBases, i)
		}
	}
	return l
}

// chainsView is a Ruleset's chain list made from a chainList: its chains
// with the rule count of each chain read and the backend of each table.
type chainsView struct {
	counts map[int]int       // rules by index of each chain read
	ipt    map[tableKey]bool // the iptables-nft tables
	chains []Chain
}

// view returns l's chains as a read that found counts (rules by index of
// each chain it read; every other chain counts -1) and whose iptables-nft
// tables are ipt. The slice is shared with the last read that found the
// same, which a watch's reads mostly do: copying 36,000 chains each round
// would cost it more than its reads of the chains source NAT runs in. The
// slice's capacity is its length, so an append copies it; its elements
// must not be changed in place.
func (l *chainList) view(counts map[int]int, ipt map[tableKey]bool) []Chain {
	if v := l.last.Load(); v != nil && maps.Equal(v.counts, counts) && maps.Equal(v.ipt, ipt) {
		return v.chains
	}
	out := make([]Chain, len(l.chains))
	copy(out, l.chains)
	for i := range out {
		c := &out[i]
		c.Rules, c.Backend = -1, natrule.Nftables
		if ipt[tableKey{c.Family, c.Table, ""}] {
			c.Backend = natrule.IptablesNFT
		}
	}
	for i, n := range counts {
		out[i].Rules = n
	}
	l.last.Store(&chainsView{counts: counts, ipt: ipt, chains: out})
	return out
}

// sourceNATHook reports whether source NAT can run in base chain c: a nat
// chain at postrouting or input. The kernel refuses masquerade and snat in
// any other base chain, and in a regular chain reached from one
// (nft_masq_validate, nft_nat_validate, xt targets' hook masks).
func sourceNATHook(c Chain) bool {
	return c.Type == "nat" && (c.Hook == "postrouting" || c.Hook == "input")
}

// indexChains maps each chain's family, table and name to its index.
func indexChains(chains []Chain) map[tableKey]int {
	idx := make(map[tableKey]int, len(chains))
	for i, c := range chains {
		idx[tableKey{c.Family, c.Table, c.Name}] = i
	}
	return idx
}
