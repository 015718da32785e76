package lab

import (
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/snatrace/snatrace/report"
	"github.com/snatrace/snatrace/report/text"
)

// WriteText writes the report for a human: the run line, one table row per
// NAT mode and backend, the accounting of every retransmitted SYN, and the
// verdict.
func WriteText(w io.Writer, rep *Report) error {
	ew := &text.Writer{W: w}
	noun := "connections"
	if rep.Proto == UDP {
		noun = "UDP queries"
	}
	ew.Printf("kernel %s, %d CPUs, workload %s: %d pods, %d server(s), %d %s in %.1f s (stopped: %s)\n",
		rep.Kernel, rep.CPUs, rep.Workload.Name, rep.Workload.Pods, rep.Workload.Servers, rep.Workload.Connections, noun, rep.Seconds, rep.Stopped)
	if vm := rep.VM; vm != nil {
		writeVM(ew, vm)
	}
	if d := rep.TSOffsets; d != nil {
		ew.Printf("TCP timestamp offsets: %s (%s)\n", d.Kind, d.Reason)
	}
	ew.Printf("\n")
	if rep.Proto == UDP {
		writeUDPBody(ew, rep)
		ew.Printf("\nverdict: %s\n", rep.Verdict)
		return ew.Err
	}
	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', tabwriter.AlignRight)
	short := rep.Workload.Name == Short
	head := "nat\tbackend\tconnections\tdelayed\tfailed\tinsert_failed\tdrop\tclash rate (95% CI)\tp50 ms\tp99 ms\tmax ms\t1s\t3s\t7s+\t"
	if short {
		head = strings.Replace(head, "\tdrop\t", "\tdrop\tPAWS\t", 1)
	}
	fmt.Fprintln(tw, head)
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t", r.NAT, r.Backend, r.Connections, r.Retransmitted, r.Failed, r.Conntrack.InsertFailed, r.Conntrack.Drop)
		if short {
			fmt.Fprintf(tw, "%d\t", r.Causes.PAWSTimewait)
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.1f\t%.1f\t%d\t%d\t%d\t\n",
			fmt.Sprintf("%.3f%% (%.3f-%.3f%%)", 100*r.ClashRate, 100*r.ClashRateCI95[0], 100*r.ClashRateCI95[1]),
			r.LatencyMS.P50, r.LatencyMS.P99, r.LatencyMS.Max, r.Delayed["1s"], r.Delayed["3s"], r.Delayed["7s+"])
	}
	tw.Flush()
	ew.Printf("\n")
	for _, r := range rep.Results {
		c := r.Causes
		status := "all accounted for"
		if !r.Accounted {
			status = "DOES NOT ADD UP: " + r.Note
		}
		paws := ""
		if rep.Workload.Name == Short || c.PAWSTimewait > 0 {
			paws = fmt.Sprintf(" + %d PAWS at TIME_WAIT", c.PAWSTimewait)
		}
		if o := r.ServerPAWS.OtherSegments; o > 0 {
			status += fmt.Sprintf(" (and %d late segments of closed connections rejected at TIME_WAIT)", o)
		}
		ew.Printf("%s (%s): %d SYNs retransmitted = %d SNAT clash + %d listen overflow + %d table full%s + %d unexplained; %s\n",
			r.NAT, r.Backend, r.SynRetrans, c.SNATClash, c.ListenOverflow, c.TableFull, paws, c.Unexplained, status)
		if t := r.Trace; t != nil {
			ew.Printf("  trace: %d SNAT-clash drops attributed to delayed connections, %d delayed connections unmatched, %d unmatched drops, %d other netfilter drops\n",
				t.Attributed, t.Unmatched, t.Extra, t.OtherDrops)
			if p := t.PAWS; p != nil && p.Note != "" {
				ew.Printf("  trace: PAWS at TIME_WAIT not seen: %s\n", p.Note)
			} else if p != nil {
				ew.Printf("  trace: %d SYNs rejected at the servers' TIME_WAIT, %d attributed to %d delayed connections, %d unmatched\n",
					p.Seen, p.Attributed, p.Connections, p.Extra)
				if p.Unseen > 0 {
					ew.Printf("  trace: %d more counted by the servers without the drop reason the tracer sees\n", p.Unseen)
				}
			}
		}
	}
	if c := rep.Incomplete; c != nil {
		ew.Printf("\ninterrupted: the round in flight (%d connections of %s, %s) was cut short and is not counted\n", c.Connections, c.NAT, c.Backend)
	}
	ew.Printf("\nverdict: %s\n", rep.Verdict)
	return ew.Err
}

// writeVM writes the VM line: how the guest booted, or how far it got
// before an interrupt (no accelerator: QEMU never started; no boot time:
// the guest's lab never started).
func writeVM(ew *text.Writer, vm *VM) {
	switch {
	case vm.Accelerator == "":
		ew.Printf("in a VM: QEMU %s, %d vCPUs, %d MiB; interrupted before QEMU started\n", vm.QEMU, vm.VCPUs, vm.MemoryMiB)
	case vm.BootSeconds == 0:
		ew.Printf("in a VM: QEMU %s, %s, %d vCPUs, %d MiB; interrupted before the guest's lab started, %.1f s in all\n",
			vm.QEMU, vm.Accelerator, vm.VCPUs, vm.MemoryMiB, vm.WallSeconds)
	default:
		ew.Printf("in a VM: QEMU %s, %s, %d vCPUs, %d MiB; booted in %.1f s (guest kernel %.1f s), %.1f s in all\n",
			vm.QEMU, vm.Accelerator, vm.VCPUs, vm.MemoryMiB, vm.BootSeconds, vm.GuestBootSeconds, vm.WallSeconds)
	}
}

// WriteHTML writes the report as a self-contained HTML page to path: the
// results table, a latency CCDF per mode, the notes of results that do not
// add up, and the JSON report.
func WriteHTML(path string, rep *Report) error {
	var series []report.Series
	rows := [][]string{{"nat", "backend", "connections", "delayed", "failed", "insert_failed", "drop", "clash rate", "95% CI", "p50 ms", "p99 ms", "max ms"}}
	if rep.Workload.Name == Short {
		rows[0] = append(rows[0], "PAWS at TIME_WAIT")
	}
	var notes []string
	title := "connect latency by NAT mode"
	if rep.Proto == UDP {
		rows, title = udpRows(rep), "query latency by NAT mode (a lost query waits the client's timeout)"
	}
	for _, r := range rep.Results {
		series = append(series, report.Series{Name: r.NAT + " (" + r.Backend + ")", Values: r.LatencyMillis()})
		if !r.Accounted {
			notes = append(notes, r.NAT+" ("+r.Backend+"): "+r.Note)
		}
		if rep.Proto == UDP {
			continue
		}
		rows = append(rows, []string{r.NAT, r.Backend, strconv.Itoa(r.Connections), strconv.Itoa(r.Retransmitted), strconv.Itoa(r.Failed),
			strconv.FormatUint(r.Conntrack.InsertFailed, 10), strconv.FormatUint(r.Conntrack.Drop, 10),
			fmt.Sprintf("%.4f%%", 100*r.ClashRate), fmt.Sprintf("%.4f-%.4f%%", 100*r.ClashRateCI95[0], 100*r.ClashRateCI95[1]),
			fmt.Sprintf("%.2f", r.LatencyMS.P50), fmt.Sprintf("%.1f", r.LatencyMS.P99), fmt.Sprintf("%.1f", r.LatencyMS.Max)})
		if rep.Workload.Name == Short {
			rows[len(rows)-1] = append(rows[len(rows)-1], strconv.FormatUint(r.Causes.PAWSTimewait, 10))
		}
	}
	plot, err := report.LatencyCCDF(title, series)
	if err != nil {
		return err
	}
	tables := []report.Table{{Title: "Results", Rows: rows}}
	workload := rep.Workload.Name
	if rep.Proto == UDP {
		tables, workload = append(tables, udpCPUTable(rep)), "UDP "+workload
	}
	return report.WriteHTMLFile(path, report.Page{
		Title:   fmt.Sprintf("snatrace lab: kernel %s, %d CPUs, %s workload, %d pods", rep.Kernel, rep.CPUs, workload, rep.Workload.Pods),
		Summary: rep.Verdict,
		Tables:  tables,
		Plots:   []template.HTML{plot},
		Notes:   notes,
		JSON:    rep,
	})
}
