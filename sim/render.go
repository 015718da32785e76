package sim

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/snatrace/snatrace/lab/labnet"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/report/text"
)

// WriteResults writes one table row per scenario and a note for each that
// ran out of ports.
func WriteResults(w io.Writer, c Config, res []Result) error {
	if c.Proto == UDP {
		return writeUDPResults(w, c, res)
	}
	ew := &text.Writer{W: w}
	w = ew
	fmt.Fprintf(w, "workload %s: %d pods, %d CPUs, %d server(s), window %v, seed %d",
		c.Workload, c.Pods, c.CPUs, c.Servers, c.Window, c.Seed)
	if c.SynLinearTimeouts != nil {
		fmt.Fprintf(w, ", tcp_syn_linear_timeouts %d", *c.SynLinearTimeouts)
	}
	fmt.Fprint(w, "\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	short := c.Workload == labnet.Short
	head := "era\tnat\tconnections\tSYNs\tclashes\tclash rate (95% CI)\t"
	if short {
		head += "PAWS at TIME_WAIT\t"
	}
	// Connections that got through after 1, 2 and 3 or more SYN
	// retransmissions (when those go depends on the era: 1, 3, 7 s before
	// 6.5, 1, 2, 3 s from it).
	head += "1 retx\t2 retx\t3+ retx\tfailed\tp99 ms\t"
	fmt.Fprintln(tw, head)
	for _, r := range res {
		one, two, later := delayedColumns(r, c.SynRetries)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s (%s-%s)\t", r.Era, r.NAT, r.Connections, r.SYNs, r.Clashes,
			pct(r.ClashRate), pct(r.ClashRateCI95[0]), pct(r.ClashRateCI95[1]))
		if short {
			fmt.Fprintf(tw, "%d (%s)\t", r.PAWSTimewait, pct(r.pawsRate()))
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%.1f\t\n", one, two, later, r.Failed, r.LatencyMS.P99)
	}
	tw.Flush()
	for _, r := range res {
		writeExhaustion(w, c, r)
	}
	return ew.Err
}

// delayedColumns counts r's connections that got through after one, two,
// and three or more SYN retransmissions; Delayed counts a failed
// connection one above the most r allows, which is none of them.
func delayedColumns(r Result, synRetries int) (one, two, later int) {
	most := MaxRetransmissions(synRetries, r.SynLinearTimeouts)
	for k, n := range r.Delayed {
		switch v, _ := strconv.Atoi(k); {
		case v > most:
		case v == 1:
			one += n
		case v == 2:
			two += n
		case v >= 3:
			later += n
		}
	}
	return one, two, later
}

// writeExhaustion notes what port exhaustion did to r, if anything: the
// connects that found no local port, the SYNs dropped for want of a NAT
// tuple, the race's share, and 6.5's evictions of closing entries.
func writeExhaustion(w io.Writer, c Config, r Result) {
	if r.NoPort > 0 {
		fmt.Fprintf(w, "\nnote: %s %s: %d connect()s found no free local port in their pod and failed at once (EADDRNOTAVAIL): --port-range %d-%d, each port held %v in the client's TIME_WAIT after a close. Widen the range, spread over more pods, or shorten the client's TIME_WAIT.\n",
			r.Era, r.NAT, r.NoPort, c.PortRange[0], c.PortRange[1], c.ClientTimeWait)
	}
	if r.NoTuple > 0 || r.Steps["exhausted"] > 0 {
		fmt.Fprintf(w, "\nnote: %s %s: port exhaustion, not the race: %d of %d SYNs found no free NAT tuple and were dropped at confirm (insert_failed %d, drop %d; %d lost the race); %d connections failed.%s Add NAT addresses or destinations, or shorten TIME_WAIT; 6.5+ evicts closing entries (%d here).\n",
			r.Era, r.NAT, r.NoTuple, r.SYNs, r.Conntrack.InsertFailed, r.Conntrack.Drop, r.Clashes-r.NoTuple, r.Failed, demand(c, r), r.Conntrack.Evicted)
	} else if r.Conntrack.Evicted > 0 {
		fmt.Fprintf(w, "\nnote: %s %s: %d TIME_WAIT entries evicted to free a NAT tuple (nf_nat_used_tuple_harder, 6.5+: searches met runs of taken ports), and no SYN was dropped for want of a tuple.\n",
			r.Era, r.NAT, r.Conntrack.Evicted)
	}
}

// demand says, for a scenario with a rate, how many NAT tuples its
// connections keep busy towards each destination against how many the
// range has: each holds its tuple for the conntrack TIME_WAIT after it
// closes. It is "" without a rate.
func demand(c Config, r Result) string {
	m, err := natrule.ParseMode(r.NAT) // r's own: c is the first scenario's
	if err != nil {
		return ""
	}
	nat, err := rangeOf(m)
	if c.Rate <= 0 || c.Servers < 1 || err != nil || nat == nil {
		return ""
	}
	perDest := c.Rate / float64(c.Servers)
	return fmt.Sprintf(" %s connections/s to each of %d destination(s) × %v of conntrack TIME_WAIT keep about %s tuples busy each, and %s has %s.",
		text.Count(perDest), c.Servers, c.CTTimeWait, text.Count(perDest*c.CTTimeWait.Seconds()), r.NAT, text.Count(float64(nat.Tuples())))
}

// WriteSweep writes the clash rate of every series at every value of the
// swept parameter.
func WriteSweep(w io.Writer, param string, values []float64, series []Series) error {
	ew := &text.Writer{W: w}
	w = ew
	short := len(series) > 0 && len(series[0].Points) > 0 && series[0].Points[0].Result.Workload == labnet.Short
	if short {
		fmt.Fprintf(w, "clash rate by %s (dropped SYNs / SYNs), and SYNs rejected by PAWS at the server's TIME_WAIT\n\n", param)
	} else {
		fmt.Fprintf(w, "clash rate by %s (dropped SYNs / SYNs)\n\n", param)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, param+"\t")
	eras := map[string]bool{}
	for _, s := range series {
		eras[s.Era] = true
	}
	for _, s := range series {
		name := s.NAT
		if len(eras) > 1 {
			name = s.Era + " " + name
		}
		fmt.Fprint(tw, name+"\t")
	}
	fmt.Fprintln(tw)
	for i, v := range values {
		fmt.Fprintf(tw, "%g\t", v)
		for _, s := range series {
			r := s.Points[i].Result
			if short {
				fmt.Fprintf(tw, "%s (%d), PAWS %s (%d)\t", pct(r.ClashRate), r.Clashes, pct(r.pawsRate()), r.PAWSTimewait)
				continue
			}
			fmt.Fprintf(tw, "%s (%d)\t", pct(r.ClashRate), r.Clashes)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	return ew.Err
}

// WriteCalibration writes a fitted race window for a human.
func WriteCalibration(w io.Writer, rep LabReport, cal Calibration) error {
	out := &text.Writer{W: w}
	fmt.Fprintf(out, "fitted on %q (kernel %s, %d CPUs, %s, %d pods)\n", cal.FitNAT, rep.Kernel, rep.CPUs, rep.Workload.Name, rep.Workload.Pods)
	fmt.Fprintf(out, "measured clash rate %s (95%% CI %s-%s), simulated at the fit %s\n", pct(cal.Measured), pct(cal.MeasuredCI95[0]), pct(cal.MeasuredCI95[1]), pct(cal.Fitted))
	hi := cal.WindowHi
	if hi == "" {
		hi = "unbounded"
	}
	fmt.Fprintf(out, "race window %s (mean %.3g µs); 95%% range %s .. %s\n", cal.Window, cal.MeanUS, cal.WindowLo, hi)
	if cal.Note != "" {
		fmt.Fprintf(out, "note: %s\n", cal.Note)
	}
	return out.Err
}

// WritePredictions writes each lab result next to its prediction.
func WritePredictions(w io.Writer, rep LabReport, cal Calibration, preds []Prediction) error {
	out := &text.Writer{W: w}
	fmt.Fprintf(out, "kernel %s, %d CPUs, workload %s, %d pods; window fitted on %q: %s (mean %.3g µs)\n\n",
		rep.Kernel, rep.CPUs, rep.Workload.Name, rep.Workload.Pods, cal.FitNAT, cal.Window, cal.MeanUS)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "nat\tSYNs\tmeasured (95% CI)\tpredicted (95% range)\tagree\t")
	for _, p := range preds {
		mark := "yes"
		if !p.Agree {
			mark = "NO"
		}
		if p.Fit {
			mark += " (fit)"
		}
		if p.Trivial() {
			mark += " (0 vs 0)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s (%s-%s)\t%s (%s-%s)\t%s\t\n", p.NAT, p.SYNs, pct(p.Measured), pct(p.MeasuredCI95[0]), pct(p.MeasuredCI95[1]),
			pct(p.Predicted), pct(p.PredictedCI95[0]), pct(p.PredictedCI95[1]), mark)
	}
	tw.Flush()
	var a Agreement
	a.Tally(preds)
	fmt.Fprintf(out, "\n%s\n", a)
	return out.Err
}

func pct(x float64) string { return strconv.FormatFloat(100*x, 'g', 3, 64) + "%" }
