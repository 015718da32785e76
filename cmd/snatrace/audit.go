package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/snatrace/snatrace/audit"
	"github.com/snatrace/snatrace/ruleset"
	"github.com/snatrace/snatrace/tsoffset"
	"github.com/spf13/cobra"
)

func init() { register(newAuditCmd) }

type auditOpts struct {
	fromFile    string
	format      string
	netns       string
	interval    time.Duration
	jsonOut     bool
	kernel      string
	iptablesVer string
	noLegacy    bool
	failOn      string
}

func newAuditCmd() *cobra.Command {
	var o auditOpts
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Find every SNAT rule that can race, who owns it, and whether it is racing now",
		Long: `audit reads every source-NAT rule of the host (or of --netns, or of a dump
given with --from-file), says which software installed it, whether it can lose
SYNs to the SNAT port race, whether the race is happening now, and the remedy
in that owner's own settings.

Live, it reads nftables over netlink (native rules and iptables-nft rules,
whose MASQUERADE/SNAT flags it decodes) and iptables-legacy (the IPv4 nat
table through the kernel interface, as iptables-legacy-save reads it; the
rest through iptables-legacy-save), and samples the conntrack counters twice --interval
apart (insert_failed and drop per CPU, clash_resolve, chaintoolong, table
fill) to tell "the race is happening" from "the table is full". Reading live
rules needs CAP_NET_ADMIN (root).

--from-file reads an iptables-save (legacy or nft), iptables -t nat -S,
nft list ruleset or nft -j list ruleset dump ("-" for stdin); the format is
detected unless --format says it. Give --kernel to judge a dump from another
host's kernel.

Exit codes: 0 no findings at or above --fail-on, 1 findings, 2 usage or
environment error (bad dump: file and line; missing privilege), and 2 when
nothing at or above --fail-on was found but a source of rules could not be
read (the report still lists what was read and what was not).`,
		Example: `  sudo snatrace audit
  sudo snatrace audit --netns snt-lab-node --interval 10s --json
  iptables-save | snatrace audit --from-file - --kernel 4.19.0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.fromFile != "" && o.netns != "" {
				return usageErr("--from-file and --netns: give one (a dump, or a namespace to read live)")
			}
			if o.fromFile != "" && cmd.Flags().Changed("interval") {
				return usageErr("--interval samples live counters; it does not apply to --from-file")
			}
			if o.interval < 0 {
				return usageErr("--interval %v: must be 0 (skip counters) or positive", o.interval)
			}
			if _, err := audit.ParseSeverity(o.failOn); err != nil {
				return usageErr("--fail-on: %w", err)
			}
			valid := false
			for _, f := range ruleset.Formats() {
				valid = valid || string(f) == o.format
			}
			if !valid {
				return usageErr("--format %q: want one of %v", o.format, ruleset.Formats())
			}
			return runAudit(cmd.Context(), cmd.OutOrStdout(), cmd.InOrStdin(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.fromFile, "from-file", "", "audit a dump file instead of the live host (\"-\": stdin)")
	f.StringVar(&o.format, "format", "auto", "dump format: auto, iptables-save, iptables-S, nft or nft-json")
	f.StringVar(&o.netns, "netns", "", "audit another namespace: "+netnsHelp)
	f.DurationVar(&o.interval, "interval", 5*time.Second, "sample conntrack counters over this interval (0: only totals since start)")
	f.BoolVar(&o.jsonOut, "json", false, "print one JSON document (rules, findings, conntrack)")
	f.StringVar(&o.kernel, "kernel", "", "kernel release to judge against (default: the running kernel, or none for --from-file)")
	f.StringVar(&o.iptablesVer, "iptables-version", "", "iptables userspace version to judge against (default: the installed one, or the dump header)")
	f.BoolVar(&o.noLegacy, "no-legacy", false, "do not read iptables-legacy rules")
	f.StringVar(&o.failOn, "fail-on", "low", "exit 1 when a finding is at least this severe: info, low, medium, high or critical")
	return cmd
}

func runAudit(ctx context.Context, stdout io.Writer, stdin io.Reader, o auditOpts) error {
	in := audit.Input{Kernel: o.kernel, Iptables: o.iptablesVer}
	if o.fromFile != "" {
		rs, data, err := readDump(stdin, o.fromFile, ruleset.Format(o.format))
		if err != nil {
			return err
		}
		in.Rules = rs
		if o.format != string(ruleset.FormatNftJSON) && (len(data) == 0 || data[0] != '{') {
			in.DNS = &audit.DNSPath{}
			audit.ScanDNS(in.DNS, o.fromFile, string(data))
		}
		if o.kernel != "" {
			ts := tsoffset.ByVersion(o.kernel)
			in.TSOffsets = &ts
		}
	} else {
		if err := auditLive(ctx, &in, o); err != nil {
			return err
		}
	}
	rep := audit.Run(in)
	if o.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("writing JSON: %w", err)
		}
	} else if err := audit.WriteText(stdout, rep); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	min, _ := audit.ParseSeverity(o.failOn)
	if rep.HasFindings(min) {
		return silentExit(exitFindings)
	}
	return incomplete(rep.ReadErrors, o.failOn)
}

// incomplete is the error of an audit that found nothing at or above
// --fail-on but could not read every source: "nothing found" would be a
// claim about rules it never saw, so it exits 2 and names them.
func incomplete(errs []ruleset.ReadError, failOn string) error {
	if len(errs) == 0 {
		return nil
	}
	var parts []string
	for _, e := range errs {
		parts = append(parts, fmt.Sprintf("the %s rules could not be read (%s: %s)", e.Backend, e.Source, e.Err))
	}
	return envErr(fmt.Errorf("audit incomplete: %s; no finding at or above %s among the rules that were read", strings.Join(parts, "; "), failOn))
}

// readDump reads and parses the --from-file dump, and returns its text.
func readDump(stdin io.Reader, name string, format ruleset.Format) (*ruleset.Ruleset, []byte, error) {
	var (
		data []byte
		err  error
	)
	if name == "-" {
		data, err = io.ReadAll(stdin)
		name = "stdin"
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, nil, usageErr("--from-file: %w", err)
	}
	rs, err := ruleset.Parse(string(data), name, format)
	if err != nil {
		return nil, nil, usageErr("--from-file: %w", err)
	}
	return rs, data, nil
}

// auditLive fills in from the running kernel: rules, counters, versions.
func auditLive(ctx context.Context, in *audit.Input, o auditOpts) error {
	ns, err := openNetNS(o.netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	live, err := audit.Live(ctx, audit.LiveOptions{NS: ns, Interval: o.interval, SkipLegacy: o.noLegacy, Kernel: in.Kernel, Iptables: in.Iptables})
	if err != nil {
		return envErr(err)
	}
	*in = live
	return nil
}
