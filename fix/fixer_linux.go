//go:build linux

package fix

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/nftnl"
	"github.com/snatrace/snatrace/ruleset"
	"github.com/snatrace/snatrace/tool"
)

// Fixer plans, applies and rolls back fixes in one network namespace, one
// operation at a time. It does not own the namespace: the caller opens and
// closes it.
type Fixer struct {
	cfg Config
	run tool.Runner
	// chains keeps the nftables chain list between a watch's reads.
	chains *ruleset.ChainCache
	// lockfile says, per family, whether its legacy restore tool honours
	// XTABLES_LOCKFILE (canHoldLock), once that is known.
	lockfileMu sync.Mutex
	lockfile   map[ruleset.Family]bool
	// shared carries every nftables request of an ApplyFresh (shareNft).
	shared *nftnl.Conn
}

// New returns a Fixer for cfg.
func New(cfg Config) *Fixer {
	f := &Fixer{cfg: cfg, run: cfg.Runner}
	if f.run == nil {
		f.run = tool.Exec{NS: cfg.NS}
	}
	if f.cfg.Now == nil {
		f.cfg.Now = time.Now
	}
	return f
}

// privateLock is the xtables lock file fix's own iptables tools take while
// fix holds the real one (iptables 1.8.6+ honour XTABLES_LOCKFILE), so that
// they do not wait for it.
const privateLock = "/run/snatrace-fix.xtables.lock"

// command is a Cmd of fix's own iptables tools: they take the private lock.
func command(name string, args ...string) tool.Cmd {
	c := tool.Command(name, args...)
	c.Env = []string{"XTABLES_LOCKFILE=" + privateLock}
	return c
}

// lockPath is the xtables lock iptables writers take.
func (f *Fixer) lockPath() string {
	if f.cfg.LockPath != "" {
		return f.cfg.LockPath
	}
	return ruleset.XtablesLockPath()
}

// Read reads the namespace's source-NAT rules.
func (f *Fixer) Read(ctx context.Context) (*ruleset.Ruleset, error) {
	return ruleset.Read(ctx, ruleset.ReadOptions{NS: f.cfg.NS, Runner: f.run, SkipLegacy: f.cfg.SkipLegacy, Nftables: f.nftOptions(), Chains: f.chains,
		LegacyDirect: f.legacyDirect(ctx)})
}

// Plan reads the namespace and plans the fix. For changes through
// iptables-restore it records each chain's checksum, re-reading when the
// rules moved while they were read.
func (f *Fixer) Plan(ctx context.Context) (*Plan, error) {
	return f.plan(ctx, f.cfg.Options)
}

// plan is Plan with opts.
func (f *Fixer) plan(ctx context.Context, opts Options) (*Plan, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		rs, err := f.Read(ctx)
		if err != nil {
			return nil, err
		}
		p := MakePlan(rs, opts)
		p.read = rs
		p.Warnings = append(p.Warnings, rs.Warnings...)
		skipAnonymousSets(p, rs)
		err = f.checksums(ctx, p, rs.TakeDumps())
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, ErrStale) {
			return nil, err
		}
		lastErr = err
	}
	return nil, fmt.Errorf("planning: the rules kept changing while they were read: %w", lastErr)
}

// checksums fills p.Chains, and fails with ErrStale when a planned rule is
// not where the plan says (the rules moved between reads). A table the read
// already saved (dumps: iptables-legacy, every table) is not saved again:
// on a 100,000-rule node a save takes most of a second.
func (f *Fixer) checksums(ctx context.Context, p *Plan, dumps []ruleset.Dump) error {
	for _, g := range groupRestore(p.Changes) {
		t, err := f.savedOrSave(ctx, g, dumps)
		if err != nil {
			return err
		}
		if p.Chains == nil {
			p.Chains = map[string]string{}
			p.saves = map[string]*SaveTable{}
		}
		p.saves[g.key()] = t
		for _, c := range g.changes {
			lines := t.Chains[c.Chain]
			if c.Position > len(lines) || lines[c.Position-1] != c.Before {
				return fmt.Errorf("%s: %w", c.Key(), ErrStale)
			}
			id := ChainID(c.Location)
			if _, ok := p.Chains[id]; !ok {
				p.Chains[id] = t.Checksum(c.Chain)
			}
		}
	}
	return nil
}

// restoreGroup is the changes one iptables-restore run makes: one backend,
// family and table.
type restoreGroup struct {
	backend ruleset.Backend
	family  ruleset.Family
	table   string
	changes []Change
}

func (g *restoreGroup) key() string {
	return string(g.backend) + " " + string(g.family) + " " + g.table
}

func groupRestore(changes []Change) []*restoreGroup {
	var out []*restoreGroup
	idx := map[string]*restoreGroup{}
	for _, c := range changes {
		if c.Method != MethodRestore {
			continue
		}
		g := &restoreGroup{backend: c.Backend, family: c.Family, table: c.Table}
		if old, ok := idx[g.key()]; ok {
			g = old
		} else {
			idx[g.key()] = g
			out = append(out, g)
		}
		g.changes = append(g.changes, c)
	}
	return out
}

// save runs the group's iptables-save for its table, with counters.
func (f *Fixer) save(ctx context.Context, g *restoreGroup) (*SaveTable, error) {
	saveBin, _, err := f.tools(ctx, g.backend, g.family)
	if err != nil {
		return nil, err
	}
	out, err := f.run.Run(ctx, command(saveBin, "-c", "-t", g.table))
	if err != nil {
		if g.backend == natrule.IptablesNFT && errors.Is(err, context.DeadlineExceeded) {
			// iptables-nft-save starts its read over at every commit.
			return nil, fmt.Errorf("%s did not finish in time; it starts over whenever the nftables ruleset changes, so the ruleset probably kept changing: %w", saveBin, err)
		}
		return nil, err
	}
	return ParseSave(string(out), g.table)
}

// savedOrSave takes g's table from what the read already has (the table it
// read directly, or its dump of g's save tool), or saves it.
func (f *Fixer) savedOrSave(ctx context.Context, g *restoreGroup, dumps []ruleset.Dump) (*SaveTable, error) {
	if f.direct(ctx, g) {
		if t, ok := directFromDumps(g, dumps); ok {
			return t, nil
		}
	}
	saveBin, _, err := f.tools(ctx, g.backend, g.family)
	if err != nil {
		return nil, err
	}
	for _, d := range dumps {
		if d.Tool == saveBin {
			if t, err := ParseSave(d.Text, g.table); err == nil {
				return t, nil
			}
		}
	}
	return f.saveTable(ctx, g, true)
}

// restore runs iptables-restore --noflush -w -c with "-R" lines.
func (f *Fixer) restore(ctx context.Context, g *restoreGroup, reps []Replacement) error {
	doc, err := RestoreDoc(g.table, reps)
	if err != nil {
		return err
	}
	_, restoreBin, err := f.tools(ctx, g.backend, g.family)
	if err != nil {
		return err
	}
	if _, err := f.run.Run(ctx, command(restoreBin, "--noflush", "-w", "5", "-c").WithStdin(doc)); err != nil {
		return fmt.Errorf("replacing %d rules of %s %s table %s: %w", len(reps), g.backend, g.family, g.table, err)
	}
	return nil
}
