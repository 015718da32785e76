package sim

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/snatrace/snatrace/report/text"
)

// writeUDPResults writes one table row per UDP scenario: queries, the
// datagrams lost at confirm (each a client timeout), and the era's
// counters, whose meaning changes at 5.10 (before it, insert_failed also
// counts resolved clashes and clash_resolve does not exist).
func writeUDPResults(w io.Writer, c Config, res []Result) error {
	ew := &text.Writer{W: w}
	fmt.Fprintf(ew, "udp workload %s: %d pods, %d CPUs, %d server(s), window %v, timeout %v, seed %d\n\n",
		c.Workload, c.Pods, c.CPUs, c.Servers, c.Window, c.UDPTimeout, c.Seed)
	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "era\tnat\tqueries\tdatagrams\tlost\tloss rate (95% CI)\tretried\tfailed\tinsert_failed\tdrop\tclash_resolve\tmerged\tinserted\t")
	for _, r := range res {
		u := r.UDPStats
		if u == nil {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s (%s-%s)\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", r.Era, r.NAT, u.Queries, r.SYNs, u.Lost,
			pct(r.ClashRate), pct(r.ClashRateCI95[0]), pct(r.ClashRateCI95[1]), u.Retried, r.Failed,
			r.Conntrack.InsertFailed, r.Conntrack.Drop, r.Conntrack.ClashResolve, u.Merged, u.Inserted)
	}
	tw.Flush()
	for _, r := range res {
		if r.NoTuple > 0 {
			fmt.Fprintf(ew, "\nnote: %s %s: port exhaustion, not the race: %d of %d datagrams found no free NAT tuple and were dropped at confirm; %d queries failed. Add NAT addresses or ports, or servers.\n",
				r.Era, r.NAT, r.NoTuple, r.SYNs, r.Failed)
		}
	}
	return ew.Err
}
