package main

import (
	"log/slog"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/snatrace/snatrace/exporter"
	"github.com/snatrace/snatrace/trace"
)

func init() { register(newExporterCmd) }

func newExporterCmd() *cobra.Command {
	var (
		listen, webConfig, netnsSpec  string
		auditInterval                 time.Duration
		auditOnly, noAudit, withTrace bool
		maxRequests, traceDests       int
	)
	cmd := &cobra.Command{
		Use:   "exporter",
		Short: "Serve conntrack counters per CPU and the SNAT rule audit to Prometheus",
		Long: `snatrace exporter serves Prometheus metrics about the SNAT source-port race.

At every scrape it reads the conntrack counters of each CPU (ctnetlink, falling
back to /proc/.../stat/nf_conntrack read by column name) and exports them as
counters: snatrace_conntrack_insert_failed_total{cpu}, _drop_total,
_clash_resolve_total, _chaintoolong_total, _early_drop_total, _invalid_total,
_search_restart_total, _found_total, with snatrace_conntrack_entries and
snatrace_conntrack_max. Every --audit-interval it audits the SNAT rules:
snatrace_snat_rules{owner,backend,randomness} and
snatrace_audit_findings{severity,kind}. A source that fails sets
snatrace_scrape_error{source} and the other metrics still come.

TLS and basic auth: --web.config.file, the prometheus/exporter-toolkit format.

With --trace it also attaches the eBPF tracer of snatrace trace and counts the
SYNs it attributes to the race: snatrace_snat_clash_drops_total{dst}, the first
--trace-destinations destinations seen by name and the rest as "other".

Privileges: CAP_NET_ADMIN for ctnetlink and the rule audit (without it the
counters come from /proc); --netns also needs CAP_SYS_ADMIN; --trace needs
CAP_BPF and CAP_PERFMON and kernel BTF.`,
		Example: `  snatrace exporter
  snatrace exporter --listen :9808 --web.config.file /etc/snatrace/web.yml
  snatrace exporter --netns snt-lab-node --no-audit`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if auditOnly && noAudit {
				return usageErr("--audit-only and --no-audit exclude each other")
			}
			if auditInterval <= 0 {
				return usageErr("--audit-interval: must be positive, got %v", auditInterval)
			}
			if traceDests <= 0 {
				return usageErr("--trace-destinations: must be positive, got %d", traceDests)
			}
			if maxRequests <= 0 {
				return usageErr("--web.max-requests: must be positive, got %d", maxRequests)
			}
			if err := exporter.ValidateWebConfig(webConfig); err != nil {
				return usageErr("--web.config.file: %v", err)
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			v := buildVersion()
			opts := []exporter.Option{
				exporter.WithLogger(log),
				exporter.WithBuildInfo(exporter.BuildInfo{Version: v.Version, Revision: v.Revision, GoVersion: v.GoVersion}),
			}
			var ns *exporter.NetNS
			if netnsSpec != "" {
				var err error
				if ns, err = exporter.OpenNetNS(netnsSpec); err != nil {
					return usageErr("--netns: %v", err)
				}
				defer ns.Close()
				opts = append(opts, ns.Option())
			}
			if auditOnly {
				opts = append(opts, exporter.WithoutConntrack())
			}
			if !noAudit {
				opts = append(opts, exporter.WithAudit(exporter.LiveAudit(ns), auditInterval))
			}
			e := exporter.New(opts...)
			hopts := exporter.HandlerOpts{MaxRequestsInFlight: maxRequests, Logger: log}
			if withTrace {
				var inode uint32
				if ns != nil {
					var err error
					if inode, err = netnsInode(ns.Path); err != nil {
						return usageErr("--netns: %v", err)
					}
				}
				t, err := trace.Start(cmd.Context(), trace.Options{NetNS: inode})
				if err != nil {
					return envErr(err)
				}
				defer t.Close()
				clash := exporter.NewClashDrops(traceDests)
				go func() {
					for ev := range t.Events() {
						clash.Observe(ev)
					}
				}()
				hopts.Extra = append(hopts.Extra, clash)
			}
			h, err := exporter.NewHandler(e, hopts)
			if err != nil {
				return err
			}
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return usageErr("--listen: %v", err)
			}
			ctx := cmd.Context()
			go e.Run(ctx)
			log.Info("serving metrics", "address", l.Addr().String(), "path", exporter.MetricsPath,
				"netns", netnsSpec, "audit", !noAudit, "conntrack", !auditOnly)
			if err := exporter.Serve(ctx, l, h, webConfig, log); err != nil {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:9808", "address to serve metrics on (a Kubernetes pod sets its own)")
	f.StringVar(&webConfig, "web.config.file", "", "exporter-toolkit web config file for TLS and basic auth")
	f.StringVar(&netnsSpec, "netns", "", "watch this network namespace: a name under /run/netns or a path (/proc/PID/ns/net)")
	f.DurationVar(&auditInterval, "audit-interval", 60*time.Second, "how often to re-audit the SNAT rules")
	f.BoolVar(&auditOnly, "audit-only", false, "export only the rule audit, no conntrack counters")
	f.BoolVar(&noAudit, "no-audit", false, "export only the conntrack counters, no rule audit")
	f.IntVar(&maxRequests, "web.max-requests", 10, "concurrent scrapes served; more get 503")
	f.BoolVar(&withTrace, "trace", false, "attach the eBPF tracer and export snatrace_snat_clash_drops_total{dst} (CAP_BPF, CAP_PERFMON)")
	f.IntVar(&traceDests, "trace-destinations", exporter.DefaultClashDestinations, "destinations named in the dst label; the rest are \"other\"")
	return cmd
}
