package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/snatrace/snatrace/audit"
	"github.com/snatrace/snatrace/fix"
	"github.com/snatrace/snatrace/internal/background"
	"github.com/snatrace/snatrace/internal/jsondoc"
	"github.com/snatrace/snatrace/report/text"
	"github.com/snatrace/snatrace/tool"
	"github.com/snatrace/snatrace/tsoffset"
	"github.com/spf13/cobra"
)

func init() { register(newFixCmd) }

type fixOpts struct {
	apply      bool
	watch      bool
	interval   time.Duration
	owners     string
	chains     []string
	exclude    []string
	netns      string
	backup     string
	noBackup   bool
	rollback   string
	planFile   string
	nftMethod  string
	legacyVia  string
	noLegacy   bool
	jsonOut    bool
	noMonitor  bool
	staleTries int
}

func newFixCmd() *cobra.Command {
	var o fixOpts
	cmd := &cobra.Command{
		Use:   "fix",
		Short: "Make the SNAT rules that can race fully-random, atomically, and keep them so",
		Long: `fix makes the source-NAT rules that audit flags (plain or random-only
MASQUERADE/SNAT) fully-random, in place, without touching anything else.

By default it only plans: it lists each rule it would change with the exact
change (- before, + after) and exits 1 if there is something to change, 0 if
not. --apply applies:

  nftables (native and iptables-nft rules): every rule is replaced by handle
    in one netlink batch, with its own expressions, counters and comment and
    only the NAT flags changed; the batch carries a ruleset generation, so
    the kernel refuses it whole if any commit comes first (a saved --plan:
    the plan's generation; --apply: the one at which the rules to replace
    were read again and found as planned, so commits elsewhere do not stall
    it);
  iptables-legacy: the kernel's table is read and replaced whole (one
    IPT_SO_SET_REPLACE a table, counters kept) with the xtables lock held
    from the read to the replace, after reading it once more to check that
    no writer ignoring the lock changed it; with iptables before 1.8.6, or
    where the kernel interface cannot be used, one iptables-restore
    --noflush -w run per table with "-R CHAIN N", after checking a checksum
    of each chain against the plan.

If the rules changed between plan and apply, nothing is applied: --apply
re-plans, --apply --plan FILE (a plan saved with --json) refuses (exit 2).
Before changing anything the original rules are written to a backup file;
--rollback FILE restores exactly those rules.

--watch (with --apply) keeps the rules fixed: it re-applies within
milliseconds of an nftables commit that touches the chains source NAT runs
in (netlink monitor; commits elsewhere wake nothing) and of an iptables
writer releasing the xtables lock, re-reads every --interval anyway, logs
every change on stderr and exits cleanly on SIGTERM/SIGINT.

Scope: --owner docker,kube-proxy keeps only those owners' rules; --chain
only those chains; --exclude owner=NAME|chain=NAME (repeatable) keeps rules
as they are: fully-random gives up source-port preservation, which NAT
traversal and port-based firewalls may rely on.

Needs CAP_NET_ADMIN (root). Exit codes: 0 nothing to do or applied, 1 the
plan has changes (plan mode), 2 usage or environment error.`,
		Example: `  sudo snatrace fix
  sudo snatrace fix --owner docker --apply
  sudo snatrace fix --apply --watch --exclude chain=KUBE-POSTROUTING
  sudo snatrace fix --json > plan.json && sudo snatrace fix --apply --plan plan.json
  sudo snatrace fix --rollback snatrace-fix-backup-20260101T120000Z.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.config(cmd)
			if err != nil {
				return err
			}
			return runFix(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o, cfg)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.apply, "apply", false, "apply the plan (default: only show it)")
	f.BoolVar(&o.watch, "watch", false, "with --apply: keep the rules fixed until SIGTERM, re-applying when their owner rewrites them")
	f.DurationVar(&o.interval, "interval", fix.DefaultInterval, "with --watch: re-read the rules this often (iptables-legacy sends no change events)")
	f.StringVar(&o.owners, "owner", "", "only rules of these owners (comma-separated: docker,kube-proxy,flannel,...)")
	f.StringSliceVar(&o.chains, "chain", nil, "only rules in these chains (comma-separated or repeated)")
	f.StringArrayVar(&o.exclude, "exclude", nil, "leave rules alone: owner=NAME, chain=NAME or both comma-joined (repeatable)")
	f.StringVar(&o.netns, "netns", "", "fix another namespace: "+netnsHelp)
	f.StringVar(&o.backup, "backup", "", "backup file for the original rules (default snatrace-fix-backup-<time>.json in the current directory)")
	f.BoolVar(&o.noBackup, "no-backup", false, "do not write a backup (no rollback possible)")
	f.StringVar(&o.rollback, "rollback", "", "restore the rules saved in this backup file")
	f.StringVar(&o.planFile, "plan", "", "with --apply: apply this plan (from snatrace fix --json), refusing if the rules changed since")
	f.StringVar(&o.nftMethod, "iptables-nft-via", string(fix.MethodNetlink), "how to change iptables-nft rules: netlink (atomic with nftables) or iptables-restore")
	f.StringVar(&o.legacyVia, "iptables-legacy-via", "kernel", "how to read and change iptables-legacy's nat tables (IPv4 and IPv6): kernel (its socket interface, as libiptc; the tools are the fallback) or iptables-restore (iptables-legacy-save and -restore only)")
	f.BoolVar(&o.noLegacy, "no-legacy", false, "leave iptables-legacy rules alone")
	f.BoolVar(&o.noMonitor, "no-monitor", false, "with --watch: no nftables netlink monitor, only periodic re-reads")
	f.BoolVar(&o.jsonOut, "json", false, "print one JSON document (plan, result, rollback or watch events)")
	f.IntVar(&o.staleTries, "tries", 5, "with --apply: plans to try when the rules keep changing under the fix")
	return cmd
}

// config checks the flags and builds the fix configuration.
func (o *fixOpts) config(cmd *cobra.Command) (fix.Config, error) {
	var cfg fix.Config
	changed := cmd.Flags().Changed
	if o.watch && !o.apply {
		return cfg, usageErr("--watch needs --apply (a watch changes rules)")
	}
	if o.interval <= 0 {
		return cfg, usageErr("--interval %v: must be positive", o.interval)
	}
	if changed("interval") && !o.watch {
		return cfg, usageErr("--interval applies to --watch only")
	}
	if o.noMonitor && !o.watch {
		return cfg, usageErr("--no-monitor applies to --watch only")
	}
	if o.planFile != "" && !o.apply {
		return cfg, usageErr("--plan %s: applying a saved plan needs --apply", o.planFile)
	}
	if o.planFile != "" && o.watch {
		return cfg, usageErr("--plan and --watch: a watch makes its own plans")
	}
	if o.staleTries < 1 {
		return cfg, usageErr("--tries %d: must be at least 1", o.staleTries)
	}
	if o.rollback != "" {
		for _, fl := range []string{"apply", "watch", "owner", "chain", "exclude", "backup", "no-backup", "plan", "iptables-nft-via"} {
			if changed(fl) {
				return cfg, usageErr("--rollback restores a backup; it does not take --%s", fl)
			}
		}
	}
	if o.noBackup && changed("backup") {
		return cfg, usageErr("--backup and --no-backup: give one")
	}
	if (changed("backup") || o.noBackup) && !o.apply {
		return cfg, usageErr("--backup/--no-backup apply to --apply only")
	}
	if changed("backup") && o.backup == "" {
		return cfg, usageErr("--backup: empty file name (use --no-backup for none)")
	}
	owners, err := fix.ParseOwners(o.owners)
	if err != nil {
		return cfg, usageErr("--owner: %w", err)
	}
	if changed("owner") && len(owners) == 0 {
		return cfg, usageErr("--owner: empty list")
	}
	for _, c := range o.chains {
		if strings.TrimSpace(c) == "" || strings.ContainsAny(c, " \t") {
			return cfg, usageErr("--chain %q: want a chain name", c)
		}
	}
	scope := fix.Scope{Owners: owners, Chains: o.chains}
	for _, e := range o.exclude {
		ex, err := fix.ParseExclusion(e)
		if err != nil {
			return cfg, usageErr("--exclude: %w", err)
		}
		scope.Exclude = append(scope.Exclude, ex)
	}
	var method fix.Method
	switch fix.Method(o.nftMethod) {
	case fix.MethodNetlink, fix.MethodRestore:
		method = fix.Method(o.nftMethod)
	default:
		return cfg, usageErr("--iptables-nft-via %q: want netlink or iptables-restore", o.nftMethod)
	}
	if o.legacyVia != "kernel" && o.legacyVia != "iptables-restore" {
		return cfg, usageErr("--iptables-legacy-via %q: want kernel or iptables-restore", o.legacyVia)
	}
	// A one-shot apply holds the xtables lock from its read to its change;
	// a watch cannot (releasing it would wake its own lock watch).
	cfg = fix.Config{SkipLegacy: o.noLegacy, LegacyText: o.legacyVia == "iptables-restore", HoldLock: o.apply && !o.watch, Options: fix.Options{Scope: scope, IptablesNft: method}}
	return cfg, nil
}

// fixOutput is the --json document.
type fixOutput struct {
	Mode          string              `json:"mode"` // plan, apply, watch, rollback
	NetNS         string              `json:"netns,omitempty"`
	Plan          *fix.Plan           `json:"plan,omitempty"`
	Result        *fix.Result         `json:"result,omitempty"`
	Rollback      *fix.RollbackResult `json:"rollback,omitempty"`
	*fix.EventLog                     // watch: its last events and totals
}

// fixRun is one snatrace fix command: the fixer and its outputs.
type fixRun struct {
	o              fixOpts
	f              *fix.Fixer
	stdout, stderr io.Writer
	out            fixOutput
}

func runFix(ctx context.Context, stdout, stderr io.Writer, o fixOpts, cfg fix.Config) error {
	ns, err := openNetNS(o.netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	cfg.NS = ns
	if o.rollback == "" {
		// A plan's PAWS note needs the kernel's timestamp offsets: probed
		// beside the read, not before it, and waited for on every path
		// (the probe deletes its namespace when it ends).
		ts := background.Start(func() *tsoffset.Detection { return audit.KernelTSOffsets(ctx, "") })
		defer ts()
		cfg.Options.TSOffsets = ts
	}
	r := &fixRun{o: o, f: fix.New(cfg), stdout: stdout, stderr: stderr, out: fixOutput{Mode: "plan", NetNS: o.netns}}
	switch {
	case o.rollback != "":
		return r.rollback(ctx)
	case !o.apply:
		return r.plan(ctx)
	}
	backup := o.backup
	if backup == "" && !o.noBackup {
		backup = fix.DefaultBackupName(time.Now())
	}
	if o.watch {
		return runFixWatch(ctx, r, backup)
	}
	return r.apply(ctx, backup)
}

// emit prints the --json document.
func (r *fixRun) emit() error {
	if !r.o.jsonOut {
		return nil
	}
	if err := fix.WriteJSON(r.stdout, r.out); err != nil {
		return fmt.Errorf("writing JSON: %w", err)
	}
	return nil
}

func (r *fixRun) rollback(ctx context.Context) error {
	r.out.Mode = "rollback"
	b, err := fix.LoadBackup(r.o.rollback)
	if err != nil {
		return usageErr("--rollback: %w", err)
	}
	res, err := r.f.Rollback(ctx, b)
	if err != nil {
		return fixErr(err)
	}
	r.out.Rollback = res
	if !r.o.jsonOut {
		if err := fix.WriteRollback(r.stdout, res); err != nil {
			return err
		}
	}
	if err := r.emit(); err != nil {
		return err
	}
	if n := len(res.Missing); n > 0 {
		fmt.Fprintf(r.stderr, "snatrace fix: rollback incomplete: %d %s left alone, no longer as the fix left %s (rewritten or removed by an owner)\n",
			n, text.Plural(n, "rule", "rules"), text.Plural(n, "it", "them"))
		return silentExit(exitFindings)
	}
	return nil
}

func (r *fixRun) plan(ctx context.Context) error {
	p, err := r.f.Plan(ctx)
	if err != nil {
		return fixErr(err)
	}
	r.out.Plan = p
	if !r.o.jsonOut {
		if err := fix.WritePlan(r.stdout, p, false); err != nil {
			return err
		}
	}
	if err := r.emit(); err != nil {
		return err
	}
	if p.HasChanges() {
		return silentExit(exitFindings)
	}
	return nil
}

func (r *fixRun) apply(ctx context.Context, backup string) error {
	r.out.Mode = "apply"
	var (
		p   *fix.Plan
		res *fix.Result
		err error
	)
	if r.o.planFile != "" {
		if p, err = readPlan(r.o.planFile); err != nil {
			return err
		}
		res, err = r.f.ApplySaved(ctx, p, backup)
	} else {
		p, res, err = r.f.ApplyFresh(ctx, backup, r.o.staleTries)
	}
	if err != nil {
		if r.o.planFile != "" && (errors.Is(err, fix.ErrStale) || errors.Is(err, fix.ErrTampered)) {
			return envErr(fmt.Errorf("--plan %s: %w; nothing was changed: make a new plan", r.o.planFile, err))
		}
		return r.partial(p, res, err)
	}
	if len(res.Applied) == 0 {
		res.Backup = ""
	}
	r.out.Plan, r.out.Result = p, res
	if !r.o.jsonOut {
		if err := fix.WritePlan(r.stdout, p, true); err != nil {
			return err
		}
		if err := fix.WriteResult(r.stdout, res); err != nil {
			return err
		}
	}
	if err := r.emit(); err != nil {
		return err
	}
	if !res.Verified {
		return silentExit(exitUsage)
	}
	return nil
}

// partial reports an apply that failed after it changed rules (one
// backend committed, the next failed; or the verify failed): what is now
// fully-random and where its backup is, then the error. Without changes it
// is the error alone.
func (r *fixRun) partial(p *fix.Plan, res *fix.Result, err error) error {
	if res == nil || len(res.Applied) == 0 {
		return fixErr(err)
	}
	res.Error = err.Error()
	r.out.Plan, r.out.Result = p, res
	if r.o.jsonOut {
		if werr := r.emit(); werr != nil {
			return werr
		}
	} else {
		fmt.Fprintf(r.stderr, "snatrace fix: the apply failed after changing %d %s (undo them with snatrace fix --rollback %s):\n",
			len(res.Applied), text.Plural(len(res.Applied), "rule", "rules"), backupName(res.Backup))
		for _, c := range res.Applied {
			fmt.Fprintf(r.stderr, "  %s: %s -> %s\n", c.Label(), c.From, c.To)
		}
	}
	return fixErr(err)
}

func runFixWatch(ctx context.Context, r *fixRun, backup string) error {
	r.out.Mode, r.out.EventLog = "watch", &fix.EventLog{Events: []fix.Event{}}
	var mu sync.Mutex
	fmt.Fprintf(r.stderr, "snatrace fix: watching (nftables events%s, re-read every %v); backup %s; SIGTERM to stop\n",
		map[bool]string{true: " off", false: ""}[r.o.noMonitor], r.o.interval, backupName(backup))
	err := r.f.Watch(ctx, fix.WatchOptions{
		Interval: r.o.interval, Backup: backup, NoMonitor: r.o.noMonitor,
		OnEvent: func(e fix.Event) {
			mu.Lock()
			defer mu.Unlock()
			if r.o.jsonOut {
				r.out.EventLog.Add(e)
			}
			fmt.Fprintln(r.stderr, "snatrace fix:", fix.FormatEvent(e))
		},
	})
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		// The events so far are the record of what the watch changed.
		if eerr := r.emit(); eerr != nil {
			fmt.Fprintln(r.stderr, "snatrace fix:", eerr)
		}
		return fixErr(err)
	}
	fmt.Fprintln(r.stderr, "snatrace fix: stopped")
	return r.emit()
}

func backupName(b string) string {
	if b == "" {
		return "none"
	}
	return b
}

func readPlan(path string) (*fix.Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErr("--plan: %w", err)
	}
	// The whole document is checked, not only its plan: a field snatrace
	// does not write (a typo, a hand edit such as "fully_random": false)
	// would otherwise be ignored without a word.
	var doc fixOutput
	err = jsondoc.Decode(data, &doc)
	if err == nil && doc.Plan == nil {
		err = errors.New("no \"plan\" in the document")
	}
	if err != nil {
		return nil, usageErr("--plan %s: not the output of snatrace fix --json: %w", path, err)
	}
	if err := doc.Plan.Check(); err != nil {
		return nil, usageErr("--plan %s: %w; nothing was changed", path, err)
	}
	return doc.Plan, nil
}

// fixErr turns a fix error into exit 2 with a message that says what is
// missing.
func fixErr(err error) error {
	if errors.Is(err, os.ErrPermission) {
		return envErr(fmt.Errorf("changing netfilter rules needs CAP_NET_ADMIN (run as root): %w", err))
	}
	if tool.IsMissing(err) {
		return envErr(fmt.Errorf("%w; nothing was changed", err))
	}
	return envErr(err)
}
