package lab

import (
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/snatrace/snatrace/report"
	"github.com/snatrace/snatrace/report/text"
)

// writeUDPBody writes a UDP run's table (one row per NAT mode and
// backend), the per-CPU clash counters, and the accounting of every lost
// transmission.
func writeUDPBody(ew *text.Writer, rep *Report) {
	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "nat\tbackend\tqueries\tlost\tretried\tfailed\tinsert_failed\tdrop\tclash_resolve\tloss rate (95% CI)\tp50 ms\tp99 ms\tmax ms\t")
	for _, r := range rep.Results {
		if r.UDPResult == nil {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%.2f\t%.1f\t%.1f\t\n",
			r.NAT, r.Backend, r.Queries, r.Lost, r.Retried, r.FailedQueries,
			r.Conntrack.InsertFailed, r.Conntrack.Drop, r.Conntrack.ClashResolve,
			fmt.Sprintf("%.3f%% (%.3f-%.3f%%)", 100*r.LossRate, 100*r.LossRateCI95[0], 100*r.LossRateCI95[1]),
			r.LatencyMS.P50, r.LatencyMS.P99, r.LatencyMS.Max)
	}
	tw.Flush()
	ew.Printf("\n")
	for _, r := range rep.Results {
		if r.UDPResult == nil {
			continue
		}
		ew.Printf("%s (%s) per CPU:", r.NAT, r.Backend)
		for _, c := range r.ConntrackPerCPU {
			ew.Printf("  cpu%d insert_failed=%d drop=%d clash_resolve=%d", c.CPU, c.InsertFailed, c.Drop, c.ClashResolve)
		}
		ew.Printf("\n")
	}
	ew.Printf("\n")
	for _, r := range rep.Results {
		if r.UDPResult == nil {
			continue
		}
		c, uc := r.Causes, r.LossCauses
		status := "all accounted for"
		if !r.Accounted {
			status = "DOES NOT ADD UP: " + r.Note
		}
		ew.Printf("%s (%s): %d queries lost = %d SNAT clash + %d table full + %d chain too long + %d socket buffer + %d late + %d unexplained; %s\n",
			r.NAT, r.Backend, r.Lost, c.SNATClash, c.TableFull, uc.ChainTooLong, uc.SocketBuffer, uc.Late, c.Unexplained, status)
	}
}

// udpRows is the HTML results table of a UDP run.
func udpRows(rep *Report) [][]string {
	rows := [][]string{{"nat", "backend", "queries", "lost", "retried", "failed", "insert_failed", "drop", "clash_resolve", "loss rate", "95% CI", "p50 ms", "p99 ms", "max ms"}}
	u64 := func(v uint64) string { return strconv.FormatUint(v, 10) }
	for _, r := range rep.Results {
		if r.UDPResult == nil {
			continue
		}
		rows = append(rows, []string{r.NAT, r.Backend, strconv.Itoa(r.Queries), u64(r.Lost), strconv.Itoa(r.Retried), strconv.Itoa(r.FailedQueries),
			u64(r.Conntrack.InsertFailed), u64(r.Conntrack.Drop), u64(r.Conntrack.ClashResolve),
			fmt.Sprintf("%.4f%%", 100*r.LossRate), fmt.Sprintf("%.4f-%.4f%%", 100*r.LossRateCI95[0], 100*r.LossRateCI95[1]),
			fmt.Sprintf("%.2f", r.LatencyMS.P50), fmt.Sprintf("%.1f", r.LatencyMS.P99), fmt.Sprintf("%.1f", r.LatencyMS.Max)})
	}
	return rows
}

// udpCPUTable is the HTML table of the node's clash counters per CPU and
// mode.
func udpCPUTable(rep *Report) report.Table {
	rows := [][]string{{"nat", "backend", "cpu", "insert_failed", "drop", "clash_resolve"}}
	for _, r := range rep.Results {
		if r.UDPResult == nil {
			continue
		}
		for _, c := range r.ConntrackPerCPU {
			rows = append(rows, []string{r.NAT, r.Backend, strconv.Itoa(c.CPU),
				strconv.FormatUint(c.InsertFailed, 10), strconv.FormatUint(c.Drop, 10), strconv.FormatUint(c.ClashResolve, 10)})
		}
	}
	return report.Table{Title: "Conntrack per CPU", Rows: rows}
}
