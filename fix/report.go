package fix

import (
	"fmt"
	"io"
	"strings"

	"github.com/snatrace/snatrace/report/text"
)

// WritePlan writes a plan for a human: one block per change with the rule
// before (-) and after (+), the rules left alone and why, and what the
// change trades away.
func WritePlan(w io.Writer, p *Plan, applied bool) error {
	ew := &text.Writer{W: w}
	n := len(p.Changes)
	switch {
	case n == 0:
		ew.Printf("Nothing to fix: no source-NAT rule in scope can race.\n")
	case applied:
		ew.Printf("Made %d source-NAT %s fully-random:\n", n, text.Plural(n, "rule", "rules"))
	default:
		ew.Printf("%d source-NAT %s to make fully-random (plan only: nothing was changed):\n", n, text.Plural(n, "rule", "rules"))
	}
	for _, c := range p.Changes {
		ew.Printf("\n%s  %s %s %s %s #%d", c.Owner, c.Backend, c.Family, c.Table, c.Chain, c.Position)
		if c.Handle != 0 {
			ew.Printf(" (handle %d)", c.Handle)
		}
		ew.Printf("  [%s, via %s]\n", c.Finding, c.Method)
		ew.Printf("  - %s\n  + %s\n", c.Before, c.After)
	}
	if len(p.Skipped) > 0 {
		ew.Printf("\nLeft alone (%d):\n", len(p.Skipped))
		for _, s := range p.Skipped {
			ew.Printf("  %s  %s %s %s %s #%d: %s\n    %s\n", s.Owner, s.Backend, s.Family, s.Table, s.Chain, s.Position, s.Reason, s.Rule)
		}
	}
	for _, w := range p.Warnings {
		ew.Printf("warning: %s\n", w)
	}
	if n > 0 {
		ew.Printf("\nTrade-off: %s.\n", Trade)
		writePAWS(ew, p.PAWS)
		if !applied {
			ew.Printf("Run with --apply to change them (one atomic change per backend, original rules saved to a backup file); add --watch to keep them fixed when their owner rewrites them.\n")
		}
	}
	return ew.Err
}

// WriteResult writes what an apply did.
func WriteResult(w io.Writer, r *Result) error {
	ew := &text.Writer{W: w}
	if r.Replans > 0 {
		ew.Printf("The ruleset changed while planning; re-planned %d %s.\n", r.Replans, text.Plural(r.Replans, "time", "times"))
	}
	if len(r.Applied) > 0 {
		v := "verified: every changed rule reads back fully-random at its position"
		if !r.Verified {
			v = "NOT verified: a re-read did not find every changed rule fully-random at its position (did its owner rewrite it? try --watch)"
		}
		ew.Printf("\n%s.\n", strings.ToUpper(v[:1])+v[1:])
		if r.Backup != "" {
			ew.Printf("Original rules saved to %s; undo with: snatrace fix --rollback %s\n", r.Backup, r.Backup)
		}
	}
	for _, w := range r.Warnings {
		ew.Printf("warning: %s\n", w)
	}
	return ew.Err
}

// WriteRollback writes what a rollback did.
func WriteRollback(w io.Writer, r *RollbackResult) error {
	ew := &text.Writer{W: w}
	if len(r.Restored)+len(r.Missing) == 0 {
		ew.Printf("Nothing to restore: no rule the backup records is as a fix left it.\n")
		return ew.Err
	}
	ew.Printf("Restored %d %s.\n", len(r.Restored), text.Plural(len(r.Restored), "rule", "rules"))
	for _, e := range r.Restored {
		ew.Printf("  %s %s %s %s #%d: %s\n", e.Backend, e.Family, e.Table, e.Chain, e.Position, e.Before)
	}
	if len(r.Missing) > 0 {
		ew.Printf("Left alone %d %s no longer as the fix left them (rewritten or removed by their owner):\n", len(r.Missing), text.Plural(len(r.Missing), "rule", "rules"))
		for _, e := range r.Missing {
			ew.Printf("  %s %s %s %s #%d: %s\n", e.Backend, e.Family, e.Table, e.Chain, e.Position, e.After)
		}
	}
	return ew.Err
}

// FormatEvent renders a watch event as one log line.
func FormatEvent(e Event) string {
	var parts []string
	for _, c := range e.Applied {
		parts = append(parts, fmt.Sprintf("%s %s %s %s #%d (%s): %s -> %s", c.Backend, c.Family, c.Table, c.Chain, c.Position, c.Owner, c.From, c.To))
	}
	if e.Err != "" {
		msg := fmt.Sprintf("%s %s: error: %s", e.Time.UTC().Format("2006-01-02T15:04:05.000Z"), e.Trigger, e.Err)
		if len(parts) > 0 {
			msg += fmt.Sprintf(" (after making %d %s fully-random: %s)", len(parts), text.Plural(len(parts), "rule", "rules"), strings.Join(parts, "; "))
		}
		return msg
	}
	return fmt.Sprintf("%s %s: made %d %s fully-random in %v: %s", e.Time.UTC().Format("2006-01-02T15:04:05.000Z"), e.Trigger,
		len(e.Applied), text.Plural(len(e.Applied), "rule", "rules"), e.Took.Round(100_000), strings.Join(parts, "; "))
}
