package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/snatrace/snatrace/lab"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/report"
	"github.com/snatrace/snatrace/trace"
)

func init() { register(newLabCmd) }

func newLabCmd() *cobra.Command {
	var (
		nats, backends []string
		workload       string
		rate           string
		portRange      string
		asJSON         bool
		reportFile     string
		failOnRace     bool
		cfg            lab.Config
	)
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Reproduce the SNAT port race on this kernel, side by side with its fixes (root)",
		Long: `snatrace lab proves the SNAT source-port race on the running kernel.

It builds throwaway network namespaces (a node that NATs N pods towards a
server, all named snt-<id>-...), installs each NAT mode on the node, sends a
bounded workload from client threads pinned one per CPU, and counts with the
kernel's own counters: conntrack insert_failed/drop on the node (from /proc by
column name, and from ctnetlink), the pods' SYN retransmissions and the
server's listen drops. Modes alternate round by round so noise hits them alike.
The host's rules, links and sysctls are never touched; everything is removed
at the end, on error and on Ctrl-C (after SIGKILL: snatrace lab cleanup).

NAT modes use nft statement syntax:
  masquerade | masquerade random | masquerade fully-random |
  masquerade to :1024-1100 | snat to 198.51.100.1[-198.51.100.9][:2000-2100] [random,fully-random,persistent] | none

Workloads:
  same-port  every pod connects from the same source port in synchronized
             bursts: the deterministic trigger of the port-preservation race
  ephemeral  bursts with kernel-chosen source ports (narrow them with --port-range)
  steady     a constant (or --poisson) --rate of connections, kernel-chosen ports

Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN). Without it, use snatrace sim.`,
		Example: `  sudo snatrace lab
  sudo snatrace lab --nat masquerade --until 10
  sudo snatrace lab --nat masquerade --backend nft --backend iptables-nft --backend iptables-legacy
  sudo snatrace lab --workload ephemeral --pods 32 --port-range 32768-32867 --json
  sudo snatrace lab --workload steady --rate 2000/s --duration 10s --report lab.html`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, s := range nats {
				m, err := natrule.ParseMode(s)
				if err != nil {
					return usageErr("--nat: %v", err)
				}
				cfg.Modes = append(cfg.Modes, m)
			}
			for _, s := range backends {
				b, err := natrule.ParseBackend(s)
				if err != nil {
					return usageErr("--backend: %v", err)
				}
				cfg.Backends = append(cfg.Backends, b)
			}
			cfg.Workload.Name = workload
			if rate != "" {
				r, err := parseRate(rate)
				if err != nil {
					return usageErr("--rate: %v", err)
				}
				cfg.Workload.Rate = r
			}
			if cfg.Workload.Name == lab.Steady {
				if cfg.Workload.Rate == 0 {
					cfg.Workload.Rate = 1000
				}
				if !cmd.Flags().Changed("connections") && cfg.Duration > 0 {
					cfg.Connections = max(1, int(cfg.Workload.Rate*cfg.Duration.Seconds()))
				}
			}
			if portRange != "" {
				lo, hi, err := parsePortRange(portRange)
				if err != nil {
					return usageErr("--port-range: %v", err)
				}
				cfg.PortRange = [2]uint16{lo, hi}
			}
			if err := cfg.Validate(); err != nil {
				return usageErr("%v", err)
			}
			if reportFile != "" && !strings.HasSuffix(reportFile, ".html") {
				return usageErr("--report: %q must end in .html", reportFile)
			}
			stderr := cmd.ErrOrStderr()
			if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				cfg.Progress = func(p lab.Progress) {
					fmt.Fprintf(stderr, "\r\033[K%s %5.1f%%  %d/%d connections  (%s: %d clashes so far)",
						bar(p.Done, p.Total, 30), 100*float64(p.Done)/float64(max(1, p.Total)), p.Done, p.Total, p.Mode, p.Clashes)
				}
			}
			rep, err := lab.Run(cmd.Context(), cfg)
			if cfg.Progress != nil {
				fmt.Fprint(stderr, "\r\033[K")
			}
			var pe *lab.PrivilegeError
			var mb *natrule.MissingBinaryError
			switch {
			case errors.As(err, &pe), errors.As(err, &mb), errors.Is(err, lab.ErrNoConntrack), errors.Is(err, trace.ErrMissing):
				return envErr(err)
			case err != nil && !errors.Is(err, lab.ErrInterrupted):
				if rep == nil {
					return envErr(err)
				}
			}
			if rep != nil {
				if asJSON {
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					if err := enc.Encode(rep); err != nil {
						return err
					}
				} else {
					printLab(cmd.OutOrStdout(), rep)
				}
				if reportFile != "" {
					if werr := writeLabReport(reportFile, rep); werr != nil {
						return envErr(werr)
					}
					fmt.Fprintf(stderr, "report written to %s\n", reportFile)
				}
			}
			if err != nil {
				return envErr(err)
			}
			if failOnRace && len(rep.Results) > 0 && rep.Results[0].Conntrack.InsertFailed > 0 {
				return silentExit(exitFindings)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&nats, "nat", nil, "NAT mode to test, nft syntax; repeat to compare (default: masquerade, masquerade fully-random)")
	f.StringArrayVar(&backends, "backend", nil, "rule backend: nft, iptables-nft, iptables-legacy; repeat to compare (default nft)")
	f.StringVar(&workload, "workload", lab.SamePort, "traffic: same-port, ephemeral or steady")
	f.IntVar(&cfg.Pods, "pods", 0, "client pod namespaces (default: one per CPU for same-port, 16 otherwise)")
	f.IntVar(&cfg.Servers, "servers", 1, "server namespaces, each behind its own uplink")
	f.IntVar(&cfg.Connections, "connections", lab.DefaultConnections, "connect()s per NAT mode and backend")
	f.DurationVar(&cfg.Duration, "duration", 0, "bound the traffic's wall time (steady: connections = rate x duration)")
	f.StringVar(&rate, "rate", "", "steady: connections per second, e.g. 2000/s (default 1000/s)")
	f.BoolVar(&cfg.Workload.Poisson, "poisson", false, "steady: Poisson arrivals instead of evenly spaced")
	f.StringVar(&portRange, "port-range", "", "set the pods' ip_local_port_range, e.g. 32768-32867")
	f.IntVar(&cfg.Until, "until", 0, "stop once a mode has N SNAT clashes confirmed by the kernel counters")
	f.IntVar(&cfg.RoundSize, "round-size", lab.DefaultRoundSize, "connections per round; modes alternate every round")
	f.DurationVar(&cfg.Timeout, "timeout", lab.DefaultTimeout, "a connection still pending after this counts as failed")
	f.Uint64Var(&cfg.Seed, "seed", 1, "seed of the workload's random choices")
	f.BoolVar(&asJSON, "json", false, "print one JSON document on stdout")
	f.StringVar(&reportFile, "report", "", "also write a self-contained HTML report with latency plots")
	f.BoolVar(&cfg.Trace, "trace", false, "attach the eBPF tracer to the node and pair every SNAT-clash drop with a delayed connection (CAP_BPF, CAP_PERFMON, kernel BTF)")
	f.BoolVar(&failOnRace, "fail-on-race", false, "exit 1 if the first mode shows any SNAT clash")
	cmd.AddCommand(newLabCleanupCmd())
	return cmd
}

func newLabCleanupCmd() *cobra.Command {
	var prefix string
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove the namespaces a killed lab run left behind",
		Long: `Removes every network namespace whose name starts with --prefix (default snt-,
i.e. all of them). A lab removes its own namespaces on success, error, Ctrl-C
and SIGTERM; only a SIGKILLed run leaves any.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.CheckPrivileges(); err != nil {
				return envErr(err)
			}
			names, err := lab.Cleanup(prefix)
			for _, n := range names {
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", n)
			}
			if err != nil {
				return envErr(err)
			}
			if len(names) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to remove")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", lab.NamePrefix, "remove namespaces whose name starts with this (must start with snt-)")
	return cmd
}

func bar(done, total, width int) string {
	n := 0
	if total > 0 {
		n = min(width, width*done/total)
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

// parseRate accepts "2000", "2000/s", "120/m".
func parseRate(s string) (float64, error) {
	num, unit, _ := strings.Cut(s, "/")
	r, err := strconv.ParseFloat(num, 64)
	if err != nil || r <= 0 {
		return 0, fmt.Errorf("%q: want a positive rate such as 2000/s", s)
	}
	switch unit {
	case "", "s":
	case "m":
		r /= 60
	default:
		return 0, fmt.Errorf("%q: unit must be /s or /m", s)
	}
	return r, nil
}

func parsePortRange(s string) (uint16, uint16, error) {
	a, b, ok := strings.Cut(s, "-")
	lo, err1 := strconv.ParseUint(a, 10, 16)
	hi, err2 := strconv.ParseUint(b, 10, 16)
	if !ok || err1 != nil || err2 != nil || lo < 1024 || lo > hi {
		return 0, 0, fmt.Errorf("%q: want LOW-HIGH with 1024 <= LOW <= HIGH <= 65535", s)
	}
	return uint16(lo), uint16(hi), nil
}

func printLab(w io.Writer, rep *lab.Report) {
	fmt.Fprintf(w, "kernel %s, %d CPUs, workload %s: %d pods, %d server(s), %d connections in %.1f s (stopped: %s)\n\n",
		rep.Kernel, rep.CPUs, rep.Workload.Name, rep.Workload.Pods, rep.Workload.Servers, rep.Workload.Connections, rep.Seconds, rep.Stopped)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "nat\tbackend\tconnections\tdelayed\tfailed\tinsert_failed\tdrop\tclash rate (95% CI)\tp50 ms\tp99 ms\tmax ms\t1s\t3s\t7s+\t")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%.2f\t%.1f\t%.1f\t%d\t%d\t%d\t\n",
			r.NAT, r.Backend, r.Connections, r.Retransmitted, r.Failed, r.Conntrack.InsertFailed, r.Conntrack.Drop,
			fmt.Sprintf("%.3f%% (%.3f-%.3f%%)", 100*r.ClashRate, 100*r.ClashRateCI95[0], 100*r.ClashRateCI95[1]),
			r.LatencyMS.P50, r.LatencyMS.P99, r.LatencyMS.Max, r.Delayed["1s"], r.Delayed["3s"], r.Delayed["7s+"])
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, r := range rep.Results {
		c := r.Causes
		status := "all accounted for"
		if !r.Accounted {
			status = "DOES NOT ADD UP: " + r.Note
		}
		fmt.Fprintf(w, "%s (%s): %d SYNs retransmitted = %d SNAT clash + %d listen overflow + %d table full + %d unexplained; %s\n",
			r.NAT, r.Backend, r.SynRetrans, c.SNATClash, c.ListenOverflow, c.TableFull, c.Unexplained, status)
		if t := r.Trace; t != nil {
			fmt.Fprintf(w, "  trace: %d SNAT-clash drops attributed to delayed connections, %d delayed connections unmatched, %d unmatched drops, %d other netfilter drops\n",
				t.Attributed, t.Unmatched, t.Extra, t.OtherDrops)
		}
	}
	fmt.Fprintf(w, "\nverdict: %s\n", rep.Verdict)
}

func writeLabReport(path string, rep *lab.Report) error {
	var series []report.Series
	rows := [][]string{{"nat", "backend", "connections", "delayed", "failed", "insert_failed", "drop", "clash rate", "95% CI", "p50 ms", "p99 ms", "max ms"}}
	for _, r := range rep.Results {
		ms := make([]float64, 0, len(r.Latencies()))
		for _, l := range r.Latencies() {
			ms = append(ms, float64(l)/float64(time.Millisecond))
		}
		series = append(series, report.Series{Name: r.NAT + " (" + r.Backend + ")", Values: ms})
		rows = append(rows, []string{r.NAT, r.Backend, strconv.Itoa(r.Connections), strconv.Itoa(r.Retransmitted), strconv.Itoa(r.Failed),
			strconv.FormatUint(r.Conntrack.InsertFailed, 10), strconv.FormatUint(r.Conntrack.Drop, 10),
			fmt.Sprintf("%.4f%%", 100*r.ClashRate), fmt.Sprintf("%.4f-%.4f%%", 100*r.ClashRateCI95[0], 100*r.ClashRateCI95[1]),
			fmt.Sprintf("%.2f", r.LatencyMS.P50), fmt.Sprintf("%.1f", r.LatencyMS.P99), fmt.Sprintf("%.1f", r.LatencyMS.Max)})
	}
	plot, err := report.LatencyCCDF("connect latency by NAT mode", series)
	if err != nil {
		return err
	}
	var notes []string
	for _, r := range rep.Results {
		if !r.Accounted {
			notes = append(notes, r.NAT+" ("+r.Backend+"): "+r.Note)
		}
	}
	return report.WriteHTMLFile(path, report.Page{
		Title:   fmt.Sprintf("snatrace lab: kernel %s, %d CPUs, %s workload, %d pods", rep.Kernel, rep.CPUs, rep.Workload.Name, rep.Workload.Pods),
		Summary: rep.Verdict,
		Tables:  []report.Table{{Title: "Results", Rows: rows}},
		Plots:   []template.HTML{plot},
		Notes:   notes,
		JSON:    rep,
	})
}
