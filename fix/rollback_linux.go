//go:build linux

package fix

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables/expr"

	"github.com/snatrace/snatrace/ruleset"
)

// Rollback puts back the rules of b that are still as the fix left them:
// nftables rules get their original NAT flags back (one batch), iptables
// rules their original line ("-R CHAIN N" after checking the line at N).
// Every entry is checked first (a tampered backup is ErrTampered and
// changes nothing): a rollback can only take away the flag a fix added.
func (f *Fixer) Rollback(ctx context.Context, b *Backup) (*RollbackResult, error) {
	ino, err := f.cfg.NS.Inode()
	if err != nil {
		return nil, err
	}
	here := &Backup{NetNS: f.nsName(), NetNSInode: ino}
	if err := here.sameNamespace(b); err != nil {
		return nil, err
	}
	for i := range b.Entries {
		if err := b.Entries[i].check(); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i+1, err)
		}
	}
	res := &RollbackResult{Restored: []BackupEntry{}, Missing: []BackupEntry{}}
	var nftEntries []BackupEntry
	var restoreChanges []Change
	// An entry not marked applied may still have been: a fix killed
	// between its commit and the mark leaves it so. It is restored if its
	// rule is as the fix would have left it, and otherwise was never
	// changed: not missing.
	unapplied := map[string]bool{}
	for _, e := range b.Entries {
		if !e.Applied {
			unapplied[ruleKey(e.Location, e.Before)] = true
		}
		switch {
		case e.Method == MethodNetlink:
			nftEntries = append(nftEntries, e)
		default:
			restoreChanges = append(restoreChanges, Change{Location: e.Location, Method: MethodRestore, Before: e.Before, After: e.After})
		}
	}
	groups := groupRestore(restoreChanges)
	if err := f.checkTools(ctx, groups); err != nil {
		return nil, err
	}
	if len(nftEntries) > 0 {
		restored, missing, err := f.rollbackNft(nftEntries)
		if err != nil {
			return nil, err
		}
		res.Restored = append(res.Restored, restored...)
		res.Missing = append(res.Missing, missing...)
	}
	unlock, held, err := f.lockLegacy(ctx, groups)
	if err != nil {
		return res, err
	}
	defer unlock()
	for _, g := range groups {
		if err := f.rollbackGroup(ctx, g, held, res); err != nil {
			return res, err
		}
	}
	res.Missing = slices.DeleteFunc(res.Missing, func(e BackupEntry) bool { return unapplied[ruleKey(e.Location, e.Before)] })
	return res, nil
}

// rollbackGroup puts back the before line of each change of g whose rule is
// still the after line, found at its position or, if it moved, as the one
// line equal to it; through the kernel interface only with the xtables
// lock held.
func (f *Fixer) rollbackGroup(ctx context.Context, g *restoreGroup, held bool, res *RollbackResult) error {
	s, err := f.saveTable(ctx, g, held)
	if err != nil {
		return err
	}
	var reps []Replacement
	var done []BackupEntry
	for _, c := range g.changes {
		e := BackupEntry{Location: c.Location, Method: MethodRestore, Before: c.Before, After: c.After, Applied: true}
		lines := s.Chains[c.Chain]
		p := c.Position
		if p > len(lines) || lines[p-1] != c.After {
			p = uniqueLine(lines, c.After)
		}
		if p == 0 {
			res.Missing = append(res.Missing, e)
			continue
		}
		reps = append(reps, Replacement{Chain: c.Chain, Position: p, Line: c.Before, Counters: s.Counters[c.Chain][p-1]})
		done = append(done, e)
	}
	if len(reps) == 0 {
		return nil
	}
	if err := f.restoreLines(ctx, g, s, reps); err != nil {
		return err
	}
	res.Restored = append(res.Restored, done...)
	return nil
}

// restoreLines puts back the before lines of reps: in the kernel's table
// directly when s was read that way and no before line is fully-random
// (each after line is then its before line with --random-fully added,
// which Rollback checked, so clearing the flag writes the before line),
// else with iptables-restore.
func (f *Fixer) restoreLines(ctx context.Context, g *restoreGroup, s *SaveTable, reps []Replacement) error {
	direct := s.direct != nil
	for _, r := range reps {
		direct = direct && !strings.Contains(r.Line, " --random-fully")
	}
	if direct {
		return f.flipDirect(s, reps, false)
	}
	return f.restore(ctx, g, reps)
}

// uniqueLine returns the 1-based position of the one line equal to s, or 0.
func uniqueLine(lines []string, s string) int {
	at := 0
	for i, l := range lines {
		if l == s {
			if at != 0 {
				return 0
			}
			at = i + 1
		}
	}
	return at
}

// skipAnonymousSets moves out of the plan the nftables changes whose rule
// updates an anonymous set (dynset "add @__setN"): the kernel cannot bind
// such a set to a second rule and, unlike a lookup's constant set, it cannot
// be copied, so the replacement would fail (EBUSY) and, the batch being
// atomic, take every other change down with it.
func skipAnonymousSets(p *Plan, rs *ruleset.Ruleset) {
	anon := map[string]bool{}
	for _, r := range rs.Rules {
		if r.Raw == nil || r.Raw.Rule == nil {
			continue
		}
		for _, e := range r.Raw.Rule.Exprs {
			if d, ok := e.(*expr.Dynset); ok && strings.HasPrefix(d.SetName, "__set") {
				anon[r.Key()] = true
			}
		}
	}
	if len(anon) == 0 {
		return
	}
	kept := p.Changes[:0]
	for _, c := range p.Changes {
		if c.Method == MethodNetlink && anon[c.Key()] {
			p.Skipped = append(p.Skipped, skippedOf(c.Location, c.Owner, c.Before,
				"it updates an anonymous set, which the kernel cannot bind to a replacement rule: add fully-random where the rule is written"))
			continue
		}
		kept = append(kept, c)
	}
	p.Changes = kept
}
