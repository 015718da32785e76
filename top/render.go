package top

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/snatrace/snatrace/report/text"
)

// WriteText writes the report as one table, worst node first, and a line
// that sums it up.
func (r *Report) WriteText(w io.Writer) error {
	out := &text.Writer{W: w}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "NODE\tRACING RULES (OWNER)\tCLASHES/S\tCLASHES %s\tCONNTRACK\tLAST AUDIT\tPROBLEMS\n", r.WindowText)
	racing, clashing := 0, 0
	var clashes float64
	for _, n := range r.Nodes {
		if n.RacingTotal > 0 {
			racing++
		}
		if n.Clashes > 0 || n.ClashesPerSecond > 0 {
			clashing++
		}
		clashes += n.Clashes
		fmt.Fprintf(tw, "%s\t%s\t%.3g\t%.0f\t%s\t%s\t%s\n", n.Node, owners(n), n.ClashesPerSecond, n.Clashes,
			fill(n), age(r.Time, n.LastAudit), problems(n))
	}
	tw.Flush()
	out.Printf("\n%d %s; %d with racing SNAT rules; %d dropping SYNs to SNAT clashes (%.0f in the last %s)\n",
		len(r.Nodes), text.Plural(len(r.Nodes), "node", "nodes"), racing, clashing, clashes, r.WindowText)
	return out.Err
}

// owners is "3 (docker 2, kube-proxy 1)", or "0".
func owners(n Node) string {
	if n.RacingTotal == 0 {
		return "0"
	}
	names := make([]string, 0, len(n.RacingRules))
	for o := range n.RacingRules {
		names = append(names, o)
	}
	sort.Strings(names)
	for i, o := range names {
		names[i] = fmt.Sprintf("%s %d", o, n.RacingRules[o])
	}
	return fmt.Sprintf("%d (%s)", n.RacingTotal, strings.Join(names, ", "))
}

func fill(n Node) string {
	if n.Fill < 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f%%", 100*n.Fill)
}

// age is how long before now t was, or "never".
func age(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second).String() + " ago"
}

func problems(n Node) string {
	var p []string
	if !n.Scraped {
		p = append(p, "not scraped now")
	}
	for _, s := range n.Failing {
		p = append(p, s+" failing")
	}
	if n.LastAudit.IsZero() {
		p = append(p, "no audit")
	}
	if len(p) == 0 {
		return "-"
	}
	return strings.Join(p, ", ")
}
