//go:build linux

package fix

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables/expr"

	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/ruleset"
)

// Fixer plans, applies and rolls back fixes in one network namespace.
type Fixer struct {
	cfg Config
	ns  *netns.NS // nil: the caller's namespace
	run Runner
}

// New opens the namespace of cfg. Close releases it.
func New(cfg Config) (*Fixer, error) {
	f := &Fixer{cfg: cfg}
	if cfg.NetNS != "" {
		ns, err := netns.Open(cfg.NetNS)
		if err != nil {
			return nil, err
		}
		f.ns = ns
	}
	f.run = cfg.Runner
	if f.run == nil {
		f.run = ExecRunner{NS: f.ns}
	}
	if f.cfg.Now == nil {
		f.cfg.Now = time.Now
	}
	return f, nil
}

// Close releases the namespace.
func (f *Fixer) Close() error {
	if f.ns != nil {
		return f.ns.Close()
	}
	return nil
}

func (f *Fixer) nsFd() int {
	if f.ns == nil {
		return 0
	}
	return f.ns.Fd()
}

// ExecRunner runs commands with os/exec inside NS (nil: the caller's
// namespace); children forked from a thread inside NS start in it.
type ExecRunner struct{ NS *netns.NS }

// Run implements Runner.
func (e ExecRunner) Run(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return "", &MissingBinaryError{Binary: name, Package: pkgOf(name)}
	}
	var out, stderr bytes.Buffer
	do := func() error {
		cmd := exec.CommandContext(ctx, path, args...)
		// fix holds the real xtables lock around its check-and-replace;
		// its own iptables tools take a private one (iptables 1.8.5+
		// honour XTABLES_LOCKFILE) so that they do not wait for it.
		cmd.Env = append(os.Environ(), "XTABLES_LOCKFILE="+privateLock)
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Stdout, cmd.Stderr = &out, &stderr
		return cmd.Run()
	}
	if e.NS != nil {
		err = e.NS.Do(do)
	} else {
		err = do()
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		return "", fmt.Errorf("running %s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return out.String(), nil
}

// LookPath implements Runner.
func (e ExecRunner) LookPath(name string) (string, error) { return exec.LookPath(name) }

func pkgOf(name string) string {
	if strings.HasPrefix(name, "nft") {
		return "nftables"
	}
	return "iptables"
}

// rulesetRunner adapts a Runner for ruleset.Read.
type rulesetRunner struct{ r Runner }

func (a rulesetRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := a.r.Run(ctx, "", name, args...)
	return []byte(out), err
}

func (a rulesetRunner) LookPath(name string) (string, error) { return a.r.LookPath(name) }

// Read reads the namespace's source-NAT rules.
func (f *Fixer) Read(ctx context.Context) (*ruleset.Ruleset, error) {
	return ruleset.Read(ctx, ruleset.ReadOptions{NetNSFd: f.nsFd(), Runner: rulesetRunner{f.run}, SkipLegacy: f.cfg.SkipLegacy})
}

// Plan reads the namespace and plans the fix. For changes through
// iptables-restore it records each chain's checksum, re-reading when the
// rules moved while they were read.
func (f *Fixer) Plan(ctx context.Context) (*Plan, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		rs, err := f.Read(ctx)
		if err != nil {
			return nil, err
		}
		p := MakePlan(rs, f.cfg.Options)
		p.Warnings = append(p.Warnings, rs.Warnings...)
		skipAnonymousSets(p, rs)
		err = f.checksums(ctx, p)
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

// restoreGroup is the changes one iptables-restore run makes.
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
		k := string(c.Backend) + " " + string(c.Family) + " " + c.Table
		g, ok := idx[k]
		if !ok {
			g = &restoreGroup{backend: c.Backend, family: c.Family, table: c.Table}
			idx[k] = g
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
	out, err := f.run.Run(ctx, "", saveBin, "-c", "-t", g.table)
	if err != nil {
		return nil, err
	}
	return ParseSave(out, g.table)
}

// checksums fills p.Chains, and fails with ErrStale when a planned rule is
// not where the plan says (the rules moved between reads).
func (f *Fixer) checksums(ctx context.Context, p *Plan) error {
	for _, g := range groupRestore(p.Changes) {
		t, err := f.save(ctx, g)
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
			id := ChainID(c.Backend, c.Family, c.Table, c.Chain)
			if _, ok := p.Chains[id]; !ok {
				p.Chains[id] = t.Checksum(c.Chain)
			}
		}
	}
	return nil
}

// Apply makes the changes of p, atomically per backend, after writing the
// affected rules to backupPath (none when ""; an existing backup there is
// merged into). It fails with ErrStale, changing nothing, if the ruleset
// moved since p was made, and with *MissingBinaryError, changing nothing, if
// a tool it needs is not installed.
func (f *Fixer) Apply(ctx context.Context, p *Plan, backupPath string) (*Result, error) {
	return f.apply(ctx, p, backupPath, false)
}

// apply is Apply; fresh says p was made just now by Plan, so the
// iptables-save it took for the checksums is reused rather than taken again.
func (f *Fixer) apply(ctx context.Context, p *Plan, backupPath string, fresh bool) (*Result, error) {
	res := &Result{Applied: []Change{}, Backup: backupPath}
	if !p.HasChanges() {
		res.Verified = true
		return res, nil
	}
	groups := groupRestore(p.Changes)
	for _, g := range groups {
		if _, _, err := f.tools(ctx, g.backend, g.family); err != nil {
			return nil, err
		}
	}
	// nftables first: one batch, refused by the kernel if stale.
	var nftChanges []Change
	for _, c := range p.Changes {
		if c.Method == MethodNetlink {
			nftChanges = append(nftChanges, c)
		}
	}
	var backup *Backup
	if backupPath != "" {
		backup = &Backup{Version: BackupVersion, Created: f.cfg.Now().UTC(), NetNS: f.cfg.NetNS}
		if old, err := LoadBackup(backupPath); err == nil {
			backup.Entries, backup.Created = old.Entries, old.Created
		}
	}
	var entries []BackupEntry
	var nftPrep *nftPrepared
	if len(nftChanges) > 0 {
		var err error
		nftPrep, err = f.prepareNft(p.Generation, nftChanges)
		if err != nil {
			return nil, err
		}
		entries = append(entries, nftPrep.entries...)
	}
	// Check the iptables chains before anything changes, holding the
	// xtables lock until the restores are done: no iptables-legacy writer
	// can move the rules between the check and the "-R N".
	var legacy []ruleset.Family
	for _, g := range groups {
		if g.backend == ruleset.IptablesLegacy {
			legacy = append(legacy, g.family)
		}
	}
	if f.canHoldLock(ctx, legacy) {
		unlock, err := lockXtables(ctx, xtablesLock())
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	saves := map[*restoreGroup]*SaveTable{}
	for _, g := range groups {
		t := p.saves[g.key()]
		// A save from before the lock may be reused only for iptables-nft,
		// whose writers do not take the lock anyway.
		if !fresh || t == nil || g.backend == ruleset.IptablesLegacy {
			var err error
			if t, err = f.save(ctx, g); err != nil {
				return nil, err
			}
		}
		sums := map[string]string{}
		for _, c := range g.changes {
			id := ChainID(c.Backend, c.Family, c.Table, c.Chain)
			sum, ok := sums[id]
			if !ok {
				sum = t.Checksum(c.Chain)
				sums[id] = sum
			}
			if want, ok := p.Chains[id]; !ok || sum != want {
				return nil, fmt.Errorf("chain %s: %w", id, ErrStale)
			}
			entries = append(entries, BackupEntry{Backend: c.Backend, Family: c.Family, Table: c.Table, Chain: c.Chain,
				Position: c.Position, Method: MethodRestore, Before: c.Before, After: c.After, From: c.From, To: c.To})
		}
		saves[g] = t
	}
	if backup != nil {
		backup.merge(entries)
		if err := backup.WriteFile(backupPath); err != nil {
			return nil, err
		}
	}
	markApplied := func(pred func(*BackupEntry) bool) error {
		if backup == nil {
			return nil
		}
		for i := range backup.Entries {
			if pred(&backup.Entries[i]) {
				backup.Entries[i].Applied = true
			}
		}
		return backup.WriteFile(backupPath)
	}
	if nftPrep != nil {
		if err := f.sendNft(nftPrep); err != nil {
			return nil, err
		}
		res.Applied = append(res.Applied, nftChanges...)
		if err := markApplied(func(e *BackupEntry) bool { return e.Method == MethodNetlink }); err != nil {
			return res, err
		}
	}
	for _, g := range groups {
		t := saves[g]
		reps := make([]Replacement, 0, len(g.changes))
		for _, c := range g.changes {
			reps = append(reps, Replacement{Chain: c.Chain, Position: c.Position, Line: c.After, Counters: t.Counters[c.Chain][c.Position-1]})
		}
		if err := f.restore(ctx, g.backend, g.family, g.table, reps); err != nil {
			return res, err
		}
		res.Applied = append(res.Applied, g.changes...)
		if err := markApplied(func(e *BackupEntry) bool {
			return e.Method == MethodRestore && e.Backend == g.backend && e.Family == g.family && e.Table == g.table
		}); err != nil {
			return res, err
		}
	}
	ok, handles, err := f.verify(ctx, res.Applied)
	if err != nil {
		return res, fmt.Errorf("verifying the fix: %w", err)
	}
	res.Verified = ok
	if backup != nil && len(handles) > 0 {
		for i := range backup.Entries {
			if h, ok := handles[backup.Entries[i].key()]; ok {
				backup.Entries[i].Handle = h
			}
		}
		if err := backup.WriteFile(backupPath); err != nil {
			return res, err
		}
	}
	return res, nil
}

// restore runs iptables-restore --noflush -w -c with "-R" lines.
func (f *Fixer) restore(ctx context.Context, b ruleset.Backend, fam ruleset.Family, table string, reps []Replacement) error {
	doc, err := RestoreDoc(table, reps)
	if err != nil {
		return err
	}
	_, restoreBin, err := f.tools(ctx, b, fam)
	if err != nil {
		return err
	}
	if _, err := f.run.Run(ctx, doc, restoreBin, "--noflush", "-w", "5", "-c"); err != nil {
		return fmt.Errorf("replacing %d rules of %s %s table %s: %w", len(reps), b, fam, table, err)
	}
	return nil
}

// verify re-reads the changed chains (not the whole ruleset: the kernel's
// own view of the few chains touched) and checks each applied change: the
// rule at its position now has the fully-random flag (nftables) or the
// planned line (iptables). It returns the nftables handles the changed rules
// have now (a replacement gets a new one), by backup key.
func (f *Fixer) verify(ctx context.Context, applied []Change) (bool, map[string]uint64, error) {
	ok := true
	handles := map[string]uint64{}
	var nftChanges []Change
	for _, c := range applied {
		if c.Method == MethodNetlink {
			nftChanges = append(nftChanges, c)
		}
	}
	if len(nftChanges) > 0 {
		conn, err := f.dialNft()
		if err != nil {
			return false, nil, err
		}
		defer conn.Close()
		chains := map[chainKey][]rawRule{}
		for _, c := range nftChanges {
			k := chainKey{familyNumbers[c.Family], c.Table, c.Chain}
			rules, seen := chains[k]
			if !seen {
				if rules, err = chainRules(conn, k.fam, k.table, k.chain); err != nil {
					return false, nil, err
				}
				chains[k] = rules
			}
			if c.Position > len(rules) {
				ok = false
				continue
			}
			r := rules[c.Position-1]
			var flags uint32
			if _, _, err := setNATFlags(r, func(old uint32) uint32 { flags = old; return old }); err != nil || flags&flagsFullyR == 0 {
				ok = false
				continue
			}
			e := BackupEntry{Backend: c.Backend, Family: c.Family, Table: c.Table, Chain: c.Chain, Position: c.Position}
			handles[e.key()] = r.Handle
		}
	}
	for _, g := range groupRestore(applied) {
		t, err := f.save(ctx, g)
		if err != nil {
			return false, nil, err
		}
		for _, c := range g.changes {
			lines := t.Chains[c.Chain]
			if c.Position > len(lines) || lines[c.Position-1] != c.After {
				ok = false
			}
		}
	}
	return ok, handles, nil
}

// ApplyFresh plans and applies, and re-plans when the plan goes stale before
// it applies (at most tries times). The returned plan is the one applied.
func (f *Fixer) ApplyFresh(ctx context.Context, backupPath string, tries int) (*Plan, *Result, error) {
	if tries < 1 {
		tries = 1
	}
	replans := 0
	for {
		p, err := f.Plan(ctx)
		if err != nil {
			return nil, nil, err
		}
		res, err := f.apply(ctx, p, backupPath, true)
		if errors.Is(err, ErrStale) && replans+1 < tries {
			replans++
			continue
		}
		if res != nil {
			res.Replans = replans
		}
		return p, res, err
	}
}

// Rollback puts back the rules of b that are still as the fix left them:
// nftables rules get their original NAT flags back (one batch), iptables
// rules their original line ("-R CHAIN N" after checking the line at N).
func (f *Fixer) Rollback(ctx context.Context, b *Backup) (*RollbackResult, error) {
	res := &RollbackResult{Restored: []BackupEntry{}, Missing: []BackupEntry{}}
	var nftEntries []BackupEntry
	groups := map[string][]BackupEntry{}
	var order []string
	for _, e := range b.Entries {
		if !e.Applied {
			continue
		}
		if e.Method == MethodNetlink {
			nftEntries = append(nftEntries, e)
			continue
		}
		k := string(e.Backend) + " " + string(e.Family) + " " + e.Table
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], e)
	}
	for _, k := range order {
		es := groups[k]
		if _, _, err := f.tools(ctx, es[0].Backend, es[0].Family); err != nil {
			return nil, err
		}
	}
	if len(nftEntries) > 0 {
		restored, missing, err := f.rollbackNft(nftEntries)
		if err != nil {
			return nil, err
		}
		res.Restored = append(res.Restored, restored...)
		res.Missing = append(res.Missing, missing...)
	}
	var legacy []ruleset.Family
	for _, k := range order {
		if es := groups[k]; es[0].Backend == ruleset.IptablesLegacy {
			legacy = append(legacy, es[0].Family)
		}
	}
	if f.canHoldLock(ctx, legacy) {
		unlock, err := lockXtables(ctx, xtablesLock())
		if err != nil {
			return res, err
		}
		defer unlock()
	}
	for _, k := range order {
		es := groups[k]
		g := &restoreGroup{backend: es[0].Backend, family: es[0].Family, table: es[0].Table}
		t, err := f.save(ctx, g)
		if err != nil {
			return res, err
		}
		var reps []Replacement
		var done []BackupEntry
		for _, e := range es {
			lines := t.Chains[e.Chain]
			p := e.Position
			if p > len(lines) || lines[p-1] != e.After {
				p = uniqueLine(lines, e.After)
			}
			if p == 0 {
				res.Missing = append(res.Missing, e)
				continue
			}
			reps = append(reps, Replacement{Chain: e.Chain, Position: p, Line: e.Before, Counters: t.Counters[e.Chain][p-1]})
			done = append(done, e)
		}
		if len(reps) == 0 {
			continue
		}
		if err := f.restore(ctx, g.backend, g.family, g.table, reps); err != nil {
			return res, err
		}
		res.Restored = append(res.Restored, done...)
	}
	return res, nil
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
	type hkey struct {
		f      ruleset.Family
		t, c   string
		handle uint64
	}
	anon := map[hkey]bool{}
	for _, r := range rs.Rules {
		if r.Raw == nil || r.Raw.Rule == nil {
			continue
		}
		for _, e := range r.Raw.Rule.Exprs {
			if d, ok := e.(*expr.Dynset); ok && strings.HasPrefix(d.SetName, "__set") {
				anon[hkey{r.Family, r.Table, r.Chain, r.Handle}] = true
			}
		}
	}
	if len(anon) == 0 {
		return
	}
	kept := p.Changes[:0]
	for _, c := range p.Changes {
		if c.Method == MethodNetlink && anon[hkey{c.Family, c.Table, c.Chain, c.Handle}] {
			p.Skipped = append(p.Skipped, Skipped{Backend: c.Backend, Family: c.Family, Table: c.Table, Chain: c.Chain,
				Position: c.Position, Owner: c.Owner, Rule: c.Before,
				Reason: "it updates an anonymous set, which the kernel cannot bind to a replacement rule: add fully-random where the rule is written"})
			continue
		}
		kept = append(kept, c)
	}
	p.Changes = kept
}

// tools returns the save and restore tools of an iptables backend and
// family: iptables-legacy-save/-restore (ip6tables-... for IPv6) or the
// -nft ones. Like the rule reader, it falls back to plain iptables-save and
// iptables-restore for legacy rules when they are the legacy flavour
// (iptables before 1.8 has no -legacy names). A missing tool is a
// *MissingBinaryError.
func (f *Fixer) tools(ctx context.Context, b ruleset.Backend, fam ruleset.Family) (save, restore string, err error) {
	save, restore = binaries(string(b), string(fam))
	_, errSave := f.run.LookPath(save)
	_, errRestore := f.run.LookPath(restore)
	if errSave == nil && errRestore == nil {
		return save, restore, nil
	}
	if b == ruleset.IptablesLegacy {
		prefix := "iptables"
		if fam == "ip6" {
			prefix = "ip6tables"
		}
		_, e1 := f.run.LookPath(prefix + "-save")
		_, e2 := f.run.LookPath(prefix + "-restore")
		if e1 == nil && e2 == nil {
			if v, err := f.run.Run(ctx, "", prefix+"-restore", "--version"); err == nil && !strings.Contains(v, "nf_tables") {
				return prefix + "-save", prefix + "-restore", nil
			}
		}
	}
	missing := save
	if errSave == nil {
		missing = restore
	}
	return "", "", &MissingBinaryError{Binary: missing, Package: "iptables"}
}

// privateLock is the xtables lock file fix's own iptables tools take while
// fix holds the real one.
const privateLock = "/run/snatrace-fix.xtables.lock"

// lockXtables takes the xtables lock (flock on path, as iptables does),
// waiting at most 10 s, and returns its release.
func lockXtables(ctx context.Context, path string) (func(), error) {
	fd, err := unix.Open(path, unix.O_CREAT|unix.O_RDONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the xtables lock %s: %w", path, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Close(fd) }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			unix.Close(fd)
			return nil, fmt.Errorf("taking the xtables lock %s: %w", path, err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("taking the xtables lock %s: another process has held it for 10 s", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var iptVersion = regexp.MustCompile(`v(\d+)\.(\d+)\.(\d+)`)

// canHoldLock reports whether fix can hold the xtables lock while it runs
// the legacy restore tools of fams: they must honour XTABLES_LOCKFILE
// (iptables 1.8.6 and later), or they would wait for the lock fix holds.
// Older tools get the checksum check alone.
func (f *Fixer) canHoldLock(ctx context.Context, fams []ruleset.Family) bool {
	if len(fams) == 0 {
		return false
	}
	for _, fam := range fams {
		_, restore, err := f.tools(ctx, ruleset.IptablesLegacy, fam)
		if err != nil {
			return false
		}
		out, err := f.run.Run(ctx, "", restore, "--version")
		m := iptVersion.FindStringSubmatch(out)
		if err != nil || m == nil {
			return false
		}
		v := [3]int{}
		for i := range v {
			v[i], _ = strconv.Atoi(m[i+1])
		}
		if v[0] < 1 || v[0] == 1 && (v[1] < 8 || v[1] == 8 && v[2] < 6) {
			return false
		}
	}
	return true
}
