package ruleset

import (
	"fmt"
	"strings"

	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/xtables"
)

// Backend and Family are natrule's: one vocabulary for every package.
type (
	Backend = natrule.Backend
	Family  = natrule.Family
)

// Location is where a rule lives: the coordinates a later change needs to
// find it again. Rules, audit views, fix plans and backups all carry it, and
// all name a rule by its Key.
type Location struct {
	Backend Backend `json:"backend"`
	Family  Family  `json:"family"`
	Table   string  `json:"table"`
	Chain   string  `json:"chain"`
	// Position is the 1-based index of the rule among all rules of its
	// chain, as iptables -R CHAIN N and nft positions count them.
	Position int `json:"position"`
	// Handle is the nftables rule handle; 0 for iptables-legacy rules and
	// for dumps printed without handles.
	Handle uint64 `json:"handle,omitempty"`
}

// Key names the rule uniquely within one reading of a ruleset: backend,
// family, table, chain and position. The handle is left out on purpose: a
// rule replaced by handle gets a new one, at the same position.
func (l Location) Key() string {
	return fmt.Sprintf("%s %s %s %s #%d", l.Backend, l.Family, l.Table, l.Chain, l.Position)
}

// Label names the rule for messages: by handle when it has one, else as Key. (Location has no
// String method: it would become the String of every type that embeds it.)
func (l Location) Label() string {
	if l.Handle != 0 {
		return fmt.Sprintf("%s %s %s %s handle %d", l.Backend, l.Family, l.Table, l.Chain, l.Handle)
	}
	return l.Key()
}

// Check validates a location read from a file (a plan, a backup): a known
// backend, a NAT family, table and chain names without blanks or control
// characters, a position.
func (l Location) Check() error {
	switch l.Backend {
	case natrule.Nftables, natrule.IptablesNFT, natrule.IptablesLegacy:
	default:
		return fmt.Errorf("unknown backend %q", l.Backend)
	}
	switch l.Family {
	case natrule.IPv4, natrule.IPv6, natrule.Inet:
	default:
		return fmt.Errorf("unsupported family %q", l.Family)
	}
	for what, name := range map[string]string{"table": l.Table, "chain": l.Chain} {
		if name == "" || len(name) > 256 || strings.IndexFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
			return fmt.Errorf("bad %s name %q", what, clip(name))
		}
	}
	if l.Position < 1 {
		return fmt.Errorf("bad position %d", l.Position)
	}
	return nil
}

// Chain is one chain of a table that holds NAT rules, kept as context for
// owner attribution and for changes at a position.
type Chain struct {
	Backend Backend `json:"backend"`
	Family  Family  `json:"family"`
	Table   string  `json:"table"`
	Name    string  `json:"name"`
	// Hook is the netfilter hook of a base chain ("postrouting"), empty for a
	// regular chain.
	Hook string `json:"hook,omitempty"`
	// Type is the base chain type ("nat", "filter"), empty for a regular chain.
	Type     string `json:"type,omitempty"`
	Priority int    `json:"priority,omitempty"`
	Policy   string `json:"policy,omitempty"`
	// Handle is the nftables chain handle, 0 when unknown.
	Handle uint64 `json:"handle,omitempty"`
	// Rules is the number of rules in the chain, NAT or not; -1 when they
	// were not read. A live nftables read reads only the chains source NAT
	// can run in (the nat base chains at postrouting and input and the
	// chains they reach), because no other chain can hold a working
	// masquerade or snat.
	Rules int `json:"rules"`
}

// Jump is an edge from a rule in one chain to another chain of the same table
// (jump, goto or an iptables -j to a user chain).
type Jump struct {
	Backend Backend
	Family  Family
	Table   string
	From    string
	To      string
	// Comment is the comment of the jumping rule, if any: owners often label
	// the jump into their chain rather than the rules inside it.
	Comment string
}

// Rule is one source-NAT rule (MASQUERADE or SNAT).
type Rule struct {
	Location
	// Hook is the hook of the rule's chain when it is a base chain, otherwise
	// the hook of the base chain that reaches it through jumps, if that is
	// unique; empty when unknown.
	Hook string `json:"hook,omitempty"`
	// Match is a readable summary of the rule's match part, in the syntax of
	// its backend ("-s 10.244.0.0/16 ! -d 224.0.0.0/4", "oifname != \"docker0\"").
	Match string `json:"match,omitempty"`
	// NAT is the rule's action: masquerade or snat, addresses, ports, flags.
	NAT natrule.Mode `json:"-"`
	// FlagsKnown is false when the source does not show the NAT flags, as
	// nft -j does for iptables-nft xt targets.
	FlagsKnown bool   `json:"flags_known"`
	Comment    string `json:"comment,omitempty"`
	// Text is the rule exactly as its source shows it: the iptables-save line
	// ("-A POSTROUTING -s ... -j MASQUERADE"), or the nft rule statement
	// list. For live iptables-nft rules it is the iptables-nft-save line.
	Text string `json:"rule"`
	// Line is the 1-based line of the rule in its dump, 0 for live rules.
	Line int `json:"line,omitempty"`
	// XT is true when the action is an xtables target inside nftables.
	XT bool `json:"xt,omitempty"`
	// Unreachable is true when no packet runs the rule: its table's base
	// chains were read (a dump of the whole table) and none of them reaches
	// the rule's chain through jumps, gotos or verdict maps. A live nftables
	// read never sees such rules (it reads only reachable chains); a dump
	// or iptables-legacy's save does.
	Unreachable bool `json:"unreachable,omitempty"`
	// Owner is the software that installed the rule, set by Attribute.
	Owner Owner `json:"owner"`
	// OwnerEvidence says which signature matched.
	OwnerEvidence string `json:"owner_evidence,omitempty"`
	// Raw holds the kernel objects of a rule read live over netlink (nil
	// otherwise): what a fix needs to replace it by handle.
	Raw *NftRaw `json:"-"`
}

// Ports returns the rule's source port range as "a-b" or "a", or "" when the
// rule gives none.
func (r *Rule) Ports() string {
	m := r.NAT
	switch {
	case !m.HasPorts():
		return ""
	case m.PortMin == m.PortMax:
		return fmt.Sprint(m.PortMin)
	}
	return fmt.Sprintf("%d-%d", m.PortMin, m.PortMax)
}

// Source says where rules were read from and how many.
type Source struct {
	Backend Backend `json:"backend"`
	// Where is a file name, "netlink" or the command that was run.
	Where string `json:"where"`
	// Format is the dump format ("iptables-save", "iptables-S", "nft", "nft-json")
	// or "netlink".
	Format string `json:"format"`
	Rules  int    `json:"nat_rules"`
	// Scanned is the number of rules of every kind read (netlink only: the
	// rules of the chains source NAT can run in).
	Scanned int `json:"scanned_rules,omitempty"`
	// Version is the userspace version the dump header or binary reports
	// ("1.8.9"), empty when unknown.
	Version string `json:"version,omitempty"`
}

// Ruleset is every source-NAT rule read from one host, namespace or dump.
type Ruleset struct {
	Rules []Rule `json:"rules"`
	// Chains are every chain of the tables read. Those of a live nftables
	// read kept in a ChainCache are shared with other reads: change them
	// only in a copy.
	Chains  []Chain  `json:"chains"`
	Jumps   []Jump   `json:"-"`
	Sources []Source `json:"sources"`
	// Generation is the nftables ruleset generation the live rules were read
	// at (0 for dumps): a fix refuses to apply when it has moved on.
	Generation uint32 `json:"generation,omitempty"`
	// Warnings are things the reader noticed that the user should know
	// (unknown statements it skipped, flags it could not see).
	Warnings []string `json:"warnings,omitempty"`
	// ReadErrors are the sources a live read could not read, or read only
	// in part: their rules are missing from Rules, or lack their iptables
	// text. An audit with read errors is incomplete and must say so.
	ReadErrors []ReadError `json:"read_errors,omitempty"`
	// scope is what a live nftables read depended on (nil otherwise).
	scope *nftScope
	// bases are the indexes in Chains of the base chains, when basesKnown:
	// a live nftables read has them from its chain list, and resolveHooks
	// then need not look through 100,000 chains for a handful.
	bases      []int
	basesKnown bool
	// dumps are the iptables-legacy save tools' output a live read parsed.
	dumps []Dump
}

// Dump is the output of a save tool a live read ran, or the nat table it
// read through the kernel interface instead (ReadOptions.LegacyDirect):
// its entries (Direct), or the lines of it ReadOptions.LegacyKeep kept.
type Dump struct {
	Tool   string // "iptables-legacy-save", or DirectSource (DirectSource6)
	Text   string
	Direct *xtables.Parsed // an iptables-legacy nat table, read directly
	// Family is the family of a nat table read through the kernel
	// interface ("" for a save tool's dump).
	Family  Family
	natText bool // Text is that nat table's kept lines, Direct nil
	natTool bool // that nat table could not be printed: ask the save tool, Direct nil
}

// TakeDumps returns what the live read of iptables-legacy parsed — a save
// tool's output (every table), or the nat table read directly
// (Dump.Direct; LegacyTexts prints it and asks for the others) — for a scan
// of other rules than the source-NAT ones (the DNS path), and forgets it:
// on a 100,000-rule node it is 15 MB of text or 60 MB of entries.
func (rs *Ruleset) TakeDumps() []Dump {
	d := rs.dumps
	rs.dumps = nil
	return d
}

// ReadError is a source of rules that could not be read.
type ReadError struct {
	// Backend is the rules the error hides: nftables (native and
	// iptables-nft over netlink), iptables-legacy, or iptables-nft (the
	// iptables-nft-save text of rules read over netlink).
	Backend Backend `json:"backend"`
	// Source is what failed: "netlink", the tool that was run, or DirectSource.
	Source string `json:"source"`
	Err    string `json:"error"`
}

// readError records that source could not be read, as a ReadError and, for
// readers of the warnings, a warning.
func (rs *Ruleset) readError(b Backend, source string, err error) {
	rs.ReadErrors = append(rs.ReadErrors, ReadError{Backend: b, Source: source, Err: err.Error()})
	rs.Warnings = append(rs.Warnings, fmt.Sprintf("%s not read (%s): %v", b, source, err))
}

// Backends returns the distinct backends of the rules, in first-seen order.
func (rs *Ruleset) Backends() []Backend {
	var out []Backend
	seen := map[Backend]bool{}
	for _, r := range rs.Rules {
		if !seen[r.Backend] {
			seen[r.Backend] = true
			out = append(out, r.Backend)
		}
	}
	return out
}

// MixedBackends reports whether NAT rules live both in iptables-legacy and in
// nftables (native or iptables-nft): two rule sets the kernel runs one after
// the other, which `iptables -L` and `nft list ruleset` each show only half of.
func (rs *Ruleset) MixedBackends() bool {
	var legacy, nft bool
	for _, r := range rs.Rules {
		switch r.Backend {
		case natrule.IptablesLegacy:
			legacy = true
		case natrule.Nftables, natrule.IptablesNFT:
			nft = true
		}
	}
	return legacy && nft
}

// merge appends o to rs.
func (rs *Ruleset) merge(o *Ruleset) {
	switch {
	case len(rs.Chains) == 0:
		// Take o's chains as they are: a kube-proxy node has 1e5 of them.
		rs.Chains, o.Chains = o.Chains, nil
		rs.bases, rs.basesKnown = o.bases, o.basesKnown
	case len(o.Chains) > 0:
		rs.bases, rs.basesKnown = nil, false // resolveHooks looks through all
	}
	rs.Rules = append(rs.Rules, o.Rules...)
	rs.Chains = append(rs.Chains, o.Chains...)
	rs.Jumps = append(rs.Jumps, o.Jumps...)
	rs.Sources = append(rs.Sources, o.Sources...)
	rs.Warnings = append(rs.Warnings, o.Warnings...)
	rs.ReadErrors = append(rs.ReadErrors, o.ReadErrors...)
	if o.Generation != 0 {
		rs.Generation = o.Generation
	}
	if o.scope != nil {
		rs.scope = o.scope
	}
	rs.dumps = append(rs.dumps, o.dumps...)
}

// resolveHooks fills Rule.Hook for rules in regular chains from the base
// chains that reach them, when exactly one hook does, and marks
// Rule.Unreachable the rules of chains no base chain of a table that has
// some reaches. Jumps are indexed by their target once and each chain is
// resolved once, however many NAT rules it holds, so a dump with 1e5 jumps
// and 1e3 NAT rules costs a few linear passes.
func (rs *Ruleset) resolveHooks() {
	hooks := map[chainKey]string{}
	bases := map[chainKey]int{} // base chains by table (chn "")
	rs.baseChains(func(c *Chain) {
		k := chainKey{c.Backend, c.Family, c.Table, c.Name}
		hooks[k] = c.Hook
		k.chn = ""
		bases[k]++
	})
	var callers map[chainKey][]chainKey // built on first need
	type reach struct {
		hook        string
		unreachable bool
	}
	resolved := map[chainKey]reach{}
	for i := range rs.Rules {
		r := &rs.Rules[i]
		if r.Hook != "" {
			continue
		}
		start := chainKey{r.Backend, r.Family, r.Table, r.Chain}
		if h, ok := hooks[start]; ok {
			r.Hook = h
			continue
		}
		res, ok := resolved[start]
		if !ok {
			if callers == nil {
				callers = make(map[chainKey][]chainKey, len(rs.Jumps))
				for _, j := range rs.Jumps {
					to := chainKey{j.Backend, j.Family, j.Table, j.To}
					callers[to] = append(callers[to], chainKey{j.Backend, j.Family, j.Table, j.From})
				}
			}
			table := start
			table.chn = ""
			found, complete := reachingHooks(start, hooks, callers)
			res.unreachable = complete && len(found) == 0 && wholeTable(table, bases[table])
			if len(found) == 1 {
				for f := range found {
					res.hook = f
				}
			}
			resolved[start] = res
		}
		r.Hook, r.Unreachable = res.hook, res.unreachable
	}
}

// baseChains calls fn with each base chain (Hook set) of rs. fn must not
// change the chain: Chains may be shared with other reads.
func (rs *Ruleset) baseChains(fn func(c *Chain)) {
	if rs.basesKnown {
		for _, i := range rs.bases {
			fn(&rs.Chains[i])
		}
		return
	}
	for i := range rs.Chains {
		if rs.Chains[i].Hook != "" {
			fn(&rs.Chains[i])
		}
	}
}

// wholeTable reports whether a dump that shows bases base chains of table
// shows the whole table, so that a chain no base chain reaches is
// unreached and not merely cut out of the dump. An iptables nat table
// always has its four built-in chains (iptables-save and iptables -S
// declare them; "iptables -S CHAIN" shows one); an nftables dump lists
// tables whole unless it is "nft list chain", which holds one chain.
func wholeTable(table chainKey, bases int) bool {
	if table.b.IsIptables() {
		return bases >= 4
	}
	return bases > 0
}

// chainKey names a chain (or, with chn "", a table) of one backend and
// family.
type chainKey struct {
	b          Backend
	f          Family
	table, chn string
}

// reachingHooks walks the jumps backwards from start, at most 32 deep, and
// returns the hooks of the base chains it meets; complete is false when the
// walk stopped at the depth limit with chains left to visit.
func reachingHooks(start chainKey, hooks map[chainKey]string, callers map[chainKey][]chainKey) (found map[string]bool, complete bool) {
	seen := map[chainKey]bool{start: true}
	frontier := []chainKey{start}
	found = map[string]bool{}
	for depth := 0; depth < 32 && len(frontier) > 0; depth++ {
		var next []chainKey
		for _, to := range frontier {
			for _, from := range callers[to] {
				if seen[from] {
					continue
				}
				seen[from] = true
				if h, ok := hooks[from]; ok {
					found[h] = true
					continue
				}
				next = append(next, from)
			}
		}
		frontier = next
	}
	return found, len(frontier) == 0
}
