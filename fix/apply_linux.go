//go:build linux

package fix

import (
	"context"
	"errors"
	"fmt"

	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/report/text"
	"github.com/snatrace/snatrace/ruleset"
)

// Apply makes the changes of p, atomically per backend, after writing the
// affected rules to backupPath (none when ""; an existing backup there is
// merged into). It fails with ErrStale, changing nothing, if the ruleset
// moved since p was made, and with a *tool.MissingError, changing nothing,
// if a tool it needs is not installed. Apply trusts p: a plan read from a
// file goes through ApplySaved.
func (f *Fixer) Apply(ctx context.Context, p *Plan, backupPath string) (*Result, error) {
	return f.apply(ctx, p, backupPath, false)
}

// apply runs the four phases of a fix: prepare (check everything, change
// nothing), write the backup, commit, verify. fresh says p was made just now
// by Plan, so the iptables-save it took for the checksums may be reused.
func (f *Fixer) apply(ctx context.Context, p *Plan, backupPath string, fresh bool) (*Result, error) {
	res := &Result{Applied: []Change{}, Backup: backupPath}
	if !p.HasChanges() {
		res.Verified = true
		return res, nil
	}
	t, err := f.prepare(ctx, p, fresh)
	if err != nil {
		return nil, err
	}
	defer t.unlock()
	bk, err := f.writeBackup(backupPath, t.entries)
	if err != nil {
		return nil, err
	}
	res.Applied, err = f.commit(ctx, t, bk)
	for _, s := range t.saves {
		if s.warning != "" {
			res.Warnings = append(res.Warnings, s.warning)
		}
	}
	if err != nil {
		return res, err
	}
	ok, fixed, err := f.verify(ctx, res.Applied, t.saves)
	if err != nil {
		return res, fmt.Errorf("verifying the fix: %w", err)
	}
	res.Verified = ok
	return res, bk.recordFixed(fixed)
}

// txn is a prepared fix: every check passed, nothing changed yet.
type txn struct {
	nft     *nftPrepared // nil without netlink changes
	nftDone []Change
	groups  []*restoreGroup
	saves   map[*restoreGroup]*SaveTable
	entries []BackupEntry
	unlock  func()
}

// prepare checks the tools, builds the nftables batch (refused if the
// generation moved), takes the xtables lock for iptables-legacy changes and
// checks every iptables chain against the plan's checksum. On error nothing
// is held.
func (f *Fixer) prepare(ctx context.Context, p *Plan, fresh bool) (*txn, error) {
	t := &txn{groups: groupRestore(p.Changes), saves: map[*restoreGroup]*SaveTable{}, unlock: func() {}}
	if err := f.checkTools(ctx, t.groups); err != nil {
		return nil, err
	}
	for _, c := range p.Changes {
		if c.Method == MethodNetlink {
			t.nftDone = append(t.nftDone, c)
		}
	}
	if len(t.nftDone) > 0 {
		nft, err := f.prepareNft(p.Generation, t.nftDone, fresh)
		if err != nil {
			return nil, err
		}
		t.nft, t.entries = nft, append(t.entries, nft.entries...)
	}
	unlock, held := func() {}, p.lockHeld
	if !held {
		var err error
		if unlock, held, err = f.lockLegacy(ctx, t.groups); err != nil {
			return nil, err
		}
	}
	for _, g := range t.groups {
		if err := f.checkGroup(ctx, p, g, fresh, held, t); err != nil {
			unlock()
			return nil, err
		}
	}
	t.unlock = unlock
	return t, nil
}

// checkGroup saves g's table (or reuses the plan's save) and compares each
// changed chain's checksum with the plan's.
func (f *Fixer) checkGroup(ctx context.Context, p *Plan, g *restoreGroup, fresh, held bool, t *txn) error {
	s := p.saves[g.key()]
	// A save from before the lock may be reused only for iptables-nft,
	// whose writers do not take the lock anyway, or when the lock was held
	// since before the read.
	// A table read directly is committed directly, which needs the lock.
	if !fresh || s == nil || s.spent || g.backend == natrule.IptablesLegacy && !p.lockHeld || s.direct != nil && !held {
		var err error
		if s, err = f.saveTable(ctx, g, held); err != nil {
			return err
		}
	}
	checked := map[string]bool{}
	for _, c := range g.changes {
		id := ChainID(c.Location)
		if !checked[id] {
			if want, ok := p.Chains[id]; !ok || s.Checksum(c.Chain) != want {
				return fmt.Errorf("chain %s: %w", id, ErrStale)
			}
			checked[id] = true
		}
		t.entries = append(t.entries, BackupEntry{Location: c.Location, Method: MethodRestore,
			Before: c.Before, After: c.After, From: c.From, To: c.To})
	}
	t.saves[g] = s
	return nil
}

// commit sends the nftables batch, then each iptables-restore, marking the
// backup entries applied as each lands. It returns what was applied, also
// on error.
func (f *Fixer) commit(ctx context.Context, t *txn, bk *backupFile) ([]Change, error) {
	var applied []Change
	if t.nft != nil {
		if err := f.sendNft(t.nft); err != nil {
			return applied, err
		}
		applied = append(applied, t.nftDone...)
		if err := bk.markApplied(func(e *BackupEntry) bool { return e.Method == MethodNetlink }); err != nil {
			return applied, err
		}
	}
	for _, g := range t.groups {
		if err := f.commitGroup(ctx, g, t.saves[g]); err != nil {
			return applied, err
		}
		applied = append(applied, g.changes...)
		if err := bk.markApplied(func(e *BackupEntry) bool {
			return e.Method == MethodRestore && e.Backend == g.backend && e.Family == g.family && e.Table == g.table
		}); err != nil {
			return applied, err
		}
	}
	return applied, nil
}

// commitGroup makes g's changes in one table commit: the flag set in the
// kernel's table as read (s.direct), or iptables-restore with the lines
// computed from s.
func (f *Fixer) commitGroup(ctx context.Context, g *restoreGroup, s *SaveTable) error {
	if s.direct != nil {
		return f.replaceDirect(s, g)
	}
	reps := make([]Replacement, 0, len(g.changes))
	for _, c := range g.changes {
		// The line written is computed here from the line in the
		// kernel, which the checksum showed equal to the plan's.
		line := s.Chains[c.Chain][c.Position-1]
		reps = append(reps, Replacement{Chain: c.Chain, Position: c.Position, Line: IptablesAfter(line), Counters: s.Counters[c.Chain][c.Position-1]})
	}
	return f.restore(ctx, g, reps)
}

// verify re-reads the changed chains (not the whole ruleset: the kernel's
// own view of the few chains touched) and checks each applied change: the
// rule at its position now has the fully-random flag (nftables) or the
// planned line (iptables). It returns the changed nftables rules as read
// back (their handles and fingerprints), by location key. A table the
// commit wrote directly (saves, by group) is read back whole and compared
// with what was written.
func (f *Fixer) verify(ctx context.Context, applied []Change, saves map[*restoreGroup]*SaveTable) (bool, map[string]fixedRule, error) {
	ok := true
	fixed := map[string]fixedRule{}
	var nftChanges []Change
	for _, c := range applied {
		if c.Method == MethodNetlink {
			nftChanges = append(nftChanges, c)
		}
	}
	if len(nftChanges) > 0 {
		good, err := f.verifyNft(nftChanges, fixed)
		if err != nil {
			return false, nil, err
		}
		ok = ok && good
	}
	committed := map[string]*SaveTable{}
	for g, s := range saves {
		if s.committed {
			committed[g.key()] = s
		}
	}
	for _, g := range groupRestore(applied) {
		if s := committed[g.key()]; s != nil {
			same, err := f.verifyDirect(s)
			if err != nil {
				return false, nil, err
			}
			if same {
				continue
			}
		}
		s, err := f.saveTable(ctx, g, true)
		if err != nil {
			return false, nil, err
		}
		for _, c := range g.changes {
			lines := s.Chains[c.Chain]
			if c.Position > len(lines) || lines[c.Position-1] != c.After {
				ok = false
			}
		}
	}
	return ok, fixed, nil
}

// verifyNft checks that each changed rule, found by its handle, is
// fully-random and records its handle and fingerprint.
func (f *Fixer) verifyNft(changes []Change, fixed map[string]fixedRule) (bool, error) {
	conn, err := f.dialNft()
	if err != nil {
		return false, err
	}
	defer conn.Close()
	cache := newChainCache(conn)
	ok := true
	for _, c := range changes {
		k, err := chainKeyOf(c.Location)
		if err != nil {
			return false, err
		}
		rules, err := cache.get(k)
		if err != nil {
			return false, err
		}
		// A replacement (NLM_F_REPLACE with the handle) keeps the rule's
		// handle: a rule without it is not the fixed rule, whatever is at
		// its position now.
		i, found := cache.byHandle[k][c.Location.Handle]
		if !found {
			ok = false
			continue
		}
		r := rules[i]
		var flags uint32
		if _, _, err := setNATFlags(r, func(old uint32) uint32 { flags = old; return old }); err != nil || flags&flagsFullyR == 0 {
			ok = false
			continue
		}
		sum, err := ruleSum(r)
		if err != nil {
			return false, err
		}
		fixed[ruleKey(c.Location, c.Before)] = fixedRule{handle: r.Handle, sum: sum}
	}
	return ok, nil
}

// ApplyFresh plans and applies, and re-plans when the plan goes stale before
// it applies (at most tries times). The returned plan is the one applied;
// its PAWS note is added after the xtables lock is released (it may wait
// for the timestamp probe).
func (f *Fixer) ApplyFresh(ctx context.Context, backupPath string, tries int) (*Plan, *Result, error) {
	if tries < 1 {
		tries = 1
	}
	done := f.shareNft()
	defer done()
	replans, changed := 0, false
	for {
		p, res, err := f.planAndApply(ctx, backupPath)
		// A try may commit nftables and then find an iptables table stale.
		changed = changed || res != nil && len(res.Applied) > 0
		if errors.Is(err, ErrStale) && replans+1 < tries {
			replans++
			continue
		}
		if errors.Is(err, ErrStale) && !changed {
			err = keptChanging(tries, err)
		}
		if res != nil {
			res.Replans = replans
		}
		if p != nil {
			notePAWS(p, f.cfg.Options.TSOffsets)
		}
		return p, res, err
	}
}

// keptChanging is the error of an ApplyFresh whose tries plans all went
// stale, err the last one's; it is still ErrStale.
func keptChanging(tries int, err error) error {
	return fmt.Errorf("the rules kept changing: %d %s went stale before %s could be applied, and nothing was changed (more with --tries): %w",
		tries, text.Plural(tries, "plan", "plans"), text.Plural(tries, "it", "each"), err)
}

// planAndApply is one round of ApplyFresh. With Config.HoldLock it takes
// the xtables lock before the read, when the namespace has an
// iptables-legacy nat table (either family) read through the kernel interface and the
// tools allow it, and holds it through the apply: the table the plan read
// is then the one changed, and is not read and printed again.
func (f *Fixer) planAndApply(ctx context.Context, backupPath string) (*Plan, *Result, error) {
	unlock, held := func() {}, false
	if f.cfg.HoldLock && f.legacyDirect(ctx) && f.hasLegacyNat() && f.canHoldLock(ctx, []ruleset.Family{natrule.IPv4, natrule.IPv6}) {
		var err error
		if unlock, err = lockXtables(ctx, f.lockPath()); err != nil {
			return nil, nil, err
		}
		held = true
	}
	defer unlock()
	// The PAWS note may wait for the timestamp probe: ApplyFresh adds it
	// once the lock is released.
	opts := f.cfg.Options
	opts.TSOffsets = nil
	p, err := f.plan(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	p.lockHeld = held
	res, err := f.apply(ctx, p, backupPath, true)
	return p, res, err
}

// ApplySaved applies a plan read from a file. It applies only what snatrace
// computes itself: the file must pass Plan.Check, and each of its changes
// must be exactly a change of a fresh plan of the same rules, at the same
// generation and chain checksums; otherwise nothing changes and the error is
// ErrTampered (a change snatrace would not make) or ErrStale (the rules
// moved since the file was written).
func (f *Fixer) ApplySaved(ctx context.Context, saved *Plan, backupPath string) (*Result, error) {
	if err := saved.Check(); err != nil {
		return nil, err
	}
	fresh, err := f.Plan(ctx)
	if err != nil {
		return nil, err
	}
	p, err := restrict(fresh, saved)
	if err != nil {
		return nil, err
	}
	return f.apply(ctx, p, backupPath, true)
}

// restrict returns fresh narrowed to the changes of saved, which must each
// be one of fresh's, at fresh's generation and checksums.
func restrict(fresh, saved *Plan) (*Plan, error) {
	have := map[string]Change{}
	for _, c := range fresh.Changes {
		have[c.Key()] = c
	}
	p := *fresh
	p.Changes = nil
	seen := map[string]bool{}
	for _, c := range saved.Changes {
		got, ok := have[c.Key()]
		switch {
		case seen[c.Key()]:
			return nil, fmt.Errorf("%s: the file lists the change twice: %w", c.Label(), ErrTampered)
		case !ok:
			return nil, fmt.Errorf("%s: no such change in a plan made now (the rule moved, or is not one snatrace would change): %w", c.Label(), ErrStale)
		case got.Handle != c.Handle || got.Method != c.Method || got.Before != c.Before || got.After != c.After || got.From != c.From || got.To != c.To:
			return nil, fmt.Errorf("%s: the file's change differs from the one snatrace computes now: %w", c.Label(), ErrTampered)
		}
		seen[c.Key()] = true
		p.Changes = append(p.Changes, got)
	}
	needNft := false
	for _, c := range p.Changes {
		needNft = needNft || c.Method == MethodNetlink
		if c.Method == MethodRestore && saved.Chains[ChainID(c.Location)] != fresh.Chains[ChainID(c.Location)] {
			return nil, fmt.Errorf("chain %s: %w", ChainID(c.Location), ErrStale)
		}
	}
	if needNft && saved.Generation != fresh.Generation {
		return nil, fmt.Errorf("nftables generation %d, plan made at %d: %w", fresh.Generation, saved.Generation, ErrStale)
	}
	return &p, nil
}
