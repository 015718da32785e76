package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/trace"
	"github.com/spf13/cobra"
)

func init() { register(newTraceCmd) }

func newTraceCmd() *cobra.Command {
	var (
		duration time.Duration
		jsonOut  bool
		all      bool
		mode     string
		nsSpec   string
	)
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Name the connections that lose a SYN or a UDP query to the SNAT race, live (eBPF, root)",
		Long: `trace attaches eBPF programs to the kernel and prints a line for every TCP
SYN or UDP datagram dropped because its source-NATed conntrack lost the race
at confirm: the pod's original tuple, the NAT'd tuple, CPU and network
namespace. On exit it prints a summary by destination and by source pod, with
the SYN retransmissions (1 s client delays) counted per destination in every
namespace.

UDP (DNS): a lost query costs its client a resolver timeout (5 s with glibc);
its line says "snat_clash udp". The UDP clashes the kernel resolved at
confirm (merged into the winner, or inserted in the reply direction only:
nothing lost) are kept apart: counted in the summary, printed with --all as
clash_merged / clash_inserted (fexit mode only).

Needs kernel BTF, CAP_BPF and CAP_PERFMON (or root), and the skb:kfree_skb and
tcp:tcp_retransmit_skb tracepoints; says which is missing (exit 2).

--json prints one JSON object per line: {"type":"event",...} per drop, then
{"type":"summary",...} at the end.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if duration < 0 {
				return usageErr("--duration %v: must be 0 (until interrupted) or positive", duration)
			}
			m, err := trace.ParseMode(mode)
			if err != nil {
				return usageErr("--mode: %w", err)
			}
			ino, err := traceInode(nsSpec)
			if err != nil {
				return err
			}
			return runTrace(cmd.Context(), cmd, traceOpts{duration, jsonOut, all, trace.Options{Mode: m, NetNS: ino}})
		},
	}
	f := cmd.Flags()
	f.DurationVar(&duration, "duration", 0, "stop after this long (0: until interrupted)")
	f.BoolVar(&jsonOut, "json", false, "print one JSON object per event, then the summary")
	f.BoolVar(&all, "all", false, "also print other netfilter SYN/UDP drops (firewall rules) and resolved UDP clashes")
	f.StringVar(&mode, "mode", "auto", "attach points: auto, fexit (require fexit on __nf_conntrack_confirm) or tracepoint")
	f.StringVar(&nsSpec, "netns", "", "only drops in this namespace: "+netnsHelp)
	return cmd
}

type traceOpts struct {
	duration time.Duration
	jsonOut  bool
	all      bool
	opts     trace.Options
}

func runTrace(ctx context.Context, cmd *cobra.Command, o traceOpts) error {
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	// The tracer outlives ctx so the summary can read its counters.
	tr, err := trace.Start(context.Background(), o.opts)
	if err != nil {
		return envErr(fmt.Errorf("starting trace: %w", err))
	}
	defer tr.Close()
	start := time.Now()
	out := cmd.OutOrStdout()
	enc := json.NewEncoder(out)
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 && !o.jsonOut {
		if fb := tr.Fallback(); fb != nil {
			fmt.Fprintf(os.Stderr, "fexit on __nf_conntrack_confirm unavailable (%v); using the tracepoint\n", fb)
		}
		fmt.Fprintf(os.Stderr, "tracing SNAT clash drops (%s mode); Ctrl-C to stop\n", tr.Mode())
	}
	var sum trace.Summarizer
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case ev, ok := <-tr.Events():
			if !ok {
				break loop
			}
			sum.Add(ev)
			if !o.all && ev.Kind != trace.KindSNATClash {
				continue
			}
			if o.jsonOut {
				if err := enc.Encode(struct {
					Type string `json:"type"`
					trace.Event
				}{"event", ev}); err != nil {
					return fmt.Errorf("writing event: %w", err)
				}
			} else {
				fmt.Fprintln(out, trace.FormatEvent(ev))
			}
		}
	}
	rt, rtErr := tr.Retransmits()
	st, stErr := tr.Stats()
	if err := errors.Join(rtErr, stErr); err != nil {
		return fmt.Errorf("reading trace counters: %w", err)
	}
	s := sum.Summary(time.Since(start), tr.Mode(), rt, st)
	if o.jsonOut {
		return enc.Encode(struct {
			Type string `json:"type"`
			trace.Summary
		}{"summary", s})
	}
	fmt.Fprintln(out)
	return trace.WriteSummary(out, s)
}

// traceInode resolves --netns to the inode the programs filter on: 0 (every
// namespace) for "", the number itself for an inode (the namespace may be
// gone or not be open to us), else the inode of the namespace it names.
func traceInode(spec string) (uint32, error) {
	if spec == "" {
		return 0, nil
	}
	if s, err := netns.ParseSpec(spec); err == nil && s.Inode != 0 {
		return s.Inode, nil
	}
	ns, err := openNetNS(spec)
	if err != nil {
		return 0, err
	}
	defer ns.Close()
	ino, err := ns.Inode()
	if err != nil {
		return 0, envErr(err)
	}
	return ino, nil
}
