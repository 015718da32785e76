package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/snatrace/snatrace/exporter"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/trace"
)

func init() { register(newExporterCmd) }

// exporterFlags are the raw flag values of snatrace exporter.
type exporterFlags struct {
	listen, webConfig, netns      string
	auditInterval, auditMinGap    time.Duration
	auditOnly, noAudit, withTrace bool
	noWatch                       bool
	maxRequests, traceDests       int
}

const exporterLong = `snatrace exporter serves Prometheus metrics about the SNAT source-port race.

At every scrape it reads the conntrack counters of each CPU (ctnetlink, falling
back to /proc/.../stat/nf_conntrack read by column name) and exports them as
counters: snatrace_conntrack_insert_failed_total{cpu}, _drop_total,
_clash_resolve_total, _chaintoolong_total, _early_drop_total, _invalid_total,
_search_restart_total, _found_total, with snatrace_conntrack_entries and
snatrace_conntrack_max. It audits the SNAT rules
(snatrace_snat_rules{owner,backend,randomness},
snatrace_audit_findings{severity,kind}) at start, whenever they may have
changed — an nftables commit that touches the chains source NAT runs in (a
commit elsewhere, such as kube-proxy's service churn, wakes nothing) or a
close of the xtables lock (iptables-legacy writers), at most once per
--audit-min-gap — and every --audit-interval as a safety net
(snatrace_audit_refreshes_total{trigger} counts them). A source that fails
sets snatrace_scrape_error{source} and the other metrics still come.

TLS and basic auth: --web.config.file, the prometheus/exporter-toolkit format.

With --trace it also attaches the eBPF tracer of snatrace trace and counts the
SYNs it attributes to the race: snatrace_snat_clash_drops_total{dst}, the first
--trace-destinations destinations seen by name and the rest as "other".

Privileges: CAP_NET_ADMIN for ctnetlink and the rule audit (without it the
counters come from /proc); --netns also needs CAP_SYS_ADMIN; --trace needs
CAP_BPF and CAP_PERFMON and kernel BTF.`

func newExporterCmd() *cobra.Command {
	var fl exporterFlags
	cmd := &cobra.Command{
		Use:   "exporter",
		Short: "Serve conntrack counters per CPU and the SNAT rule audit to Prometheus",
		Long:  exporterLong,
		Example: `  snatrace exporter
  snatrace exporter --listen :9808 --web.config.file /etc/snatrace/web.yml
  snatrace exporter --netns snt-lab-node --no-audit`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := fl.check(); err != nil {
				return err
			}
			return runExporter(cmd, fl)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.listen, "listen", "127.0.0.1:9808", "address to serve metrics on (a Kubernetes pod sets its own)")
	f.StringVar(&fl.webConfig, "web.config.file", "", "exporter-toolkit web config file for TLS and basic auth")
	f.StringVar(&fl.netns, "netns", "", "watch another namespace: "+netnsHelp)
	f.DurationVar(&fl.auditInterval, "audit-interval", 10*time.Minute, "re-audit the SNAT rules at least this often (a safety net: changes are followed as they happen)")
	f.DurationVar(&fl.auditMinGap, "audit-min-gap", 10*time.Second, "re-audit after a change at most this often")
	f.BoolVar(&fl.noWatch, "no-watch", false, "do not follow rule changes: re-audit every --audit-interval only")
	f.BoolVar(&fl.auditOnly, "audit-only", false, "export only the rule audit, no conntrack counters")
	f.BoolVar(&fl.noAudit, "no-audit", false, "export only the conntrack counters, no rule audit")
	f.IntVar(&fl.maxRequests, "web.max-requests", 10, "concurrent scrapes served; more get 503")
	f.BoolVar(&fl.withTrace, "trace", false, "attach the eBPF tracer and export snatrace_snat_clash_drops_total{dst}, snatrace_udp_snat_clash_drops_total{dst} and snatrace_udp_clashes_resolved_total{how} (CAP_BPF, CAP_PERFMON)")
	f.IntVar(&fl.traceDests, "trace-destinations", exporter.DefaultClashDestinations, "destinations named in the dst label; the rest are \"other\"")
	return cmd
}

// check reports flag values that cannot work, as usage errors.
func (fl exporterFlags) check() error {
	switch {
	case fl.auditOnly && fl.noAudit:
		return usageErr("--audit-only and --no-audit exclude each other")
	case fl.auditInterval <= 0:
		return usageErr("--audit-interval: must be positive, got %v", fl.auditInterval)
	case fl.auditMinGap <= 0:
		return usageErr("--audit-min-gap: must be positive, got %v", fl.auditMinGap)
	case fl.traceDests <= 0:
		return usageErr("--trace-destinations: must be positive, got %d", fl.traceDests)
	case fl.maxRequests <= 0:
		return usageErr("--web.max-requests: must be positive, got %d", fl.maxRequests)
	}
	if err := exporter.ValidateWebConfig(fl.webConfig); err != nil {
		return usageErr("--web.config.file: %w", err)
	}
	return nil
}

func runExporter(cmd *cobra.Command, fl exporterFlags) error {
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
	ns, err := openNetNS(fl.netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	e := exporter.New(fl.options(log, ns)...)
	hopts := exporter.HandlerOpts{MaxRequestsInFlight: fl.maxRequests, Logger: log}
	if fl.withTrace {
		clash, stop, err := startClashTrace(ctx, ns, fl.traceDests)
		if err != nil {
			return err
		}
		defer stop()
		hopts.Extra = append(hopts.Extra, clash)
	}
	h, err := exporter.NewHandler(e, hopts)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", fl.listen)
	if err != nil {
		return usageErr("--listen: %w", err)
	}
	refreshed := make(chan struct{})
	go func() { defer close(refreshed); e.Run(ctx) }()
	gone := make(chan error, 1)
	if fl.netns != "" {
		go followNetNS(ctx, ns, fl.netns, gone, cancel)
	}
	log.Info("serving metrics", "address", l.Addr().String(), "path", exporter.MetricsPath,
		"netns", fl.netns, "audit", !fl.noAudit, "conntrack", !fl.auditOnly)
	err = exporter.Serve(ctx, l, h, fl.webConfig, log)
	cancel()
	<-refreshed // the audit uses ns: it must end before ns is closed
	select {
	case gerr := <-gone:
		return gerr
	default:
	}
	return err
}

// netnsCheck is how often the exporter checks that --netns still names
// the namespace it watches.
const netnsCheck = 2 * time.Second

// followNetNS stops the exporter (stop) when spec no longer opens ns: the
// namespace was deleted or its name reused. The exporter's handle would
// keep a deleted namespace alive, and its metrics would describe a
// namespace nothing else uses.
//
// A namespace given by inode number is not followed: the search for it
// finds the exporter's own handle.
func followNetNS(ctx context.Context, ns *netns.NS, spec string, gone chan<- error, stop func()) {
	if s, err := netns.ParseSpec(spec); err != nil || s.Inode != 0 {
		return
	}
	t := time.NewTicker(netnsCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := ns.StillOpens(spec); errors.Is(err, netns.ErrGone) {
			gone <- fmt.Errorf("%w: stopping", err)
			stop()
			return
		}
	}
}

// options are the exporter's options for the flags.
func (fl exporterFlags) options(log *slog.Logger, ns *netns.NS) []exporter.Option {
	v := buildVersion()
	opts := []exporter.Option{
		exporter.WithLogger(log),
		exporter.WithBuildInfo(exporter.BuildInfo{Version: v.Version, Revision: v.Revision, GoVersion: v.GoVersion}),
	}
	if ns != nil {
		opts = append(opts, exporter.ConntrackOf(ns))
	}
	if fl.auditOnly {
		opts = append(opts, exporter.WithoutConntrack())
	}
	if !fl.noAudit {
		a := exporter.NewLiveAuditor(ns, "")
		opts = append(opts, exporter.WithAudit(a.Audit, fl.auditInterval))
		if !fl.noWatch {
			opts = append(opts, exporter.WithAuditWatch(a.Watch, fl.auditMinGap))
		}
	}
	return opts
}

// startClashTrace attaches the tracer to ns (nil: every namespace) and feeds
// snatrace_snat_clash_drops_total and its UDP twins from it.
func startClashTrace(ctx context.Context, ns *netns.NS, dests int) (*exporter.ClashDrops, func(), error) {
	var inode uint32
	if ns != nil {
		var err error
		if inode, err = ns.Inode(); err != nil {
			return nil, nil, usageErr("--netns: %w", err)
		}
	}
	t, err := trace.Start(ctx, trace.Options{NetNS: inode})
	if err != nil {
		return nil, nil, envErr(err)
	}
	clash := exporter.NewClashDrops(dests)
	go func() {
		for ev := range t.Events() {
			clash.Observe(ev)
		}
	}()
	return clash, func() { t.Close() }, nil
}
