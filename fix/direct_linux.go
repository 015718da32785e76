//go:build linux

package fix

import (
	"context"
	"errors"
	"fmt"

	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/ruleset"
	"github.com/snatrace/snatrace/xtables"
)

// direct reports whether g's table is read (and, with the xtables lock
// held, changed) through the kernel interface: iptables-legacy's nat
// table of either family, when legacyDirect.
func (f *Fixer) direct(ctx context.Context, g *restoreGroup) bool {
	return g.backend == natrule.IptablesLegacy && g.table == "nat" && f.legacyDirect(ctx)
}

// legacyDirect reports whether the legacy nat tables go through the
// kernel interface at all: not with Config.LegacyText, and not where fix
// cannot hold the xtables lock (iptables before 1.8.6, whose tools would
// wait for it): a direct commit runs no tool that takes the lock, so it
// must hold it, and a plan read directly must be checked the same way.
func (f *Fixer) legacyDirect(ctx context.Context) bool {
	return !f.cfg.LegacyText && !f.cfg.SkipLegacy && f.canHoldLock(ctx, []ruleset.Family{natrule.IPv4})
}

// directSave reads g's table from the kernel and prints the chains g
// changes, with their counters; an error sends the caller to the save tool.
func (f *Fixer) directSave(g *restoreGroup) (*SaveTable, error) {
	t, err := xtables.ReadTable(f.cfg.NS, ruleset.XtablesFamily(g.family), g.table)
	if err != nil {
		return nil, err
	}
	p, err := xtables.Parse(t)
	if err != nil {
		return nil, err
	}
	return directTable(p, g)
}

// directTable prints the chains of p that g changes as a SaveTable,
// counters included, remembering p for the commit. A chain g names that p
// lacks is absent from it, as from a save.
func directTable(p *xtables.Parsed, g *restoreGroup) (*SaveTable, error) {
	st := &SaveTable{Name: g.table, Chains: map[string][]string{}, Counters: map[string][]string{}, direct: p}
	for _, c := range g.changes {
		ch := p.Chain(c.Chain)
		if ch == nil || st.Chains[c.Chain] != nil {
			continue
		}
		lines := make([]string, len(ch.Rules))
		counters := make([]string, len(ch.Rules))
		for k, i := range ch.Rules {
			line, err := p.Rule(i, c.Chain)
			if err != nil {
				return nil, fmt.Errorf("chain %s: %w", c.Chain, err)
			}
			pk, by := p.Counters(i)
			lines[k], counters[k] = line, fmt.Sprintf("[%d:%d]", pk, by)
		}
		st.Chains[c.Chain], st.Counters[c.Chain] = lines, counters
	}
	return st, nil
}

// directFromDumps is directTable of g's table, if the read took it
// directly.
func directFromDumps(g *restoreGroup, dumps []ruleset.Dump) (*SaveTable, bool) {
	for _, d := range dumps {
		if d.Direct != nil && d.Direct.Table.Family == ruleset.XtablesFamily(g.family) && d.Direct.Table.Name == g.table {
			st, err := directTable(d.Direct, g)
			return st, err == nil
		}
	}
	return nil, false
}

// replaceDirect makes g's changes in s's kernel table in one commit: the
// fully-random flag set on each planned rule's NAT range, every other byte
// as read. A table that changed since s was read is ErrStale (the caller
// holds the xtables lock: only a writer that ignores it can do that).
func (f *Fixer) replaceDirect(s *SaveTable, g *restoreGroup) error {
	var at []Replacement
	for _, c := range g.changes {
		at = append(at, Replacement{Chain: c.Chain, Position: c.Position})
	}
	return f.flipDirect(s, at, true)
}

// flipDirect sets (on) or clears the fully-random flag of the rules at
// the places of at in s's kernel table, in one commit, and records what it
// committed.
func (f *Fixer) flipDirect(s *SaveTable, at []Replacement, on bool) error {
	p := s.direct
	var idx []int
	for _, r := range at {
		ch := p.Chain(r.Chain)
		if ch == nil || r.Position < 1 || r.Position > len(ch.Rules) {
			return fmt.Errorf("chain %s position %d: %w", r.Chain, r.Position, ErrStale)
		}
		idx = append(idx, ch.Rules[r.Position-1])
	}
	sock, err := xtables.Open(f.cfg.NS, p.Table.Family)
	if err != nil {
		return err
	}
	defer sock.Close()
	now, err := lookAgain(sock, s)
	if err != nil {
		return err
	}
	err = sock.Commit(now, func(entries []byte) error {
		return p.SetRandomFully(entries, idx, on)
	})
	if err == nil || errors.Is(err, xtables.ErrCountersLost) {
		// now holds what was committed, its rules at p.Table's places:
		// the verification reads into it. s stays spent.
		p.Table = now
		s.committed = true
		// Cannot fail: lookAgain fingerprinted now, and the edit set flags.
		s.committedFP, _ = now.Fingerprint()
	}
	switch {
	case errors.Is(err, xtables.ErrCountersLost):
		s.warning = err.Error() + ": the changed table's rule counters restart from zero"
		return nil
	case errors.Is(err, xtables.ErrChanged):
		return fmt.Errorf("%w: %w", ErrStale, err)
	case err != nil:
		return fmt.Errorf("replacing %d rules of %s table %s: %w", len(idx), p.Table.Family.Tool(), p.Table.Name, err)
	}
	return nil
}

// lookAgain reads s's table again right before a commit, and returns it
// if its rules are still s's: the kernel refuses a commit only when the
// entry count moved, and a writer that ignores the xtables lock could
// have changed a rule in place since s was read. A table that differs is
// ErrStale, not overwritten. (A commit of such a writer after this read
// and before the kernel swaps in the new table — it first copies and
// checks it all — is still written over.) The read goes into the memory of s's own
// (fresh memory costs more than the read at 60 MB), which leaves s spent.
func lookAgain(sock *xtables.Socket, s *SaveTable) (*xtables.Table, error) {
	old := s.direct.Table
	want, err := old.Fingerprint()
	if err != nil {
		return nil, err
	}
	info := old.Info
	s.spent = true
	now, err := sock.GetInto(old.Name, old)
	if err != nil {
		return nil, err
	}
	if got, err := now.Fingerprint(); err != nil || got != want || now.Info != info {
		return nil, fmt.Errorf("%s table %s changed since it was read: %w", now.Family.Tool(), now.Name, ErrStale)
	}
	return now, nil
}

// saveTable is save through the kernel interface where direct allows it
// and the caller may commit what it reads that way (locked: the xtables
// lock is held, or the caller only reads), falling back to the save tool.
func (f *Fixer) saveTable(ctx context.Context, g *restoreGroup, locked bool) (*SaveTable, error) {
	if locked && f.direct(ctx, g) {
		if s, err := f.directSave(g); err == nil {
			return s, nil
		}
	}
	return f.save(ctx, g)
}

// verifyDirect reads g's table back after a direct commit, into the
// committed table's memory, and reports whether it is the table the commit
// wrote (by fingerprint, counters aside), in which case every planned rule
// has the flag at its place. When it is not (a writer that ignores the
// xtables lock came between), ok is false and the caller checks the rules
// one by one in a fresh read.
func (f *Fixer) verifyDirect(s *SaveTable) (ok bool, err error) {
	p := s.direct
	info := p.Table.Info
	t, err := xtables.ReadTableInto(f.cfg.NS, p.Table.Family, p.Table.Name, p.Table)
	if err != nil {
		return false, err
	}
	got, err := t.Fingerprint()
	if err != nil || got != s.committedFP || t.Info != info {
		return false, nil
	}
	p.Table = t
	return true, nil
}

// directDigest hashes the rules of the legacy nat table of fam, read
// through the kernel interface; a namespace without the table hashes to
// zero.
func (f *Fixer) directDigest(fam ruleset.Family) (uint64, error) {
	t, err := xtables.ReadTable(f.cfg.NS, ruleset.XtablesFamily(fam), "nat")
	if errors.Is(err, xtables.ErrNoTable) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return t.Fingerprint()
}

// hasLegacyNat reports whether the namespace has a legacy nat table of
// either family (false when that cannot be told).
func (f *Fixer) hasLegacyNat() bool {
	for _, fam := range []xtables.Family{xtables.IPv4, xtables.IPv6} {
		if ok, err := xtables.HasTable(f.cfg.NS, fam, "nat"); ok && err == nil {
			return true
		}
	}
	return false
}
