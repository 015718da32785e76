package fix

import (
	"github.com/snatrace/snatrace/report/text"
	"github.com/snatrace/snatrace/tsoffset"
)

// PAWSNote is what a plan says, on a kernel whose TCP timestamp offsets
// depend on the ports, about the cost fully-random has there: short
// connections remapped onto a tuple a server still holds in TIME_WAIT are
// rejected by the server's PAWS check (docs/fix.md, "fully-random on
// kernels with per-port timestamp offsets").
type PAWSNote struct {
	TSOffsets    tsoffset.Detection `json:"ts_offsets"`
	Message      string             `json:"message"`
	Alternatives []string           `json:"alternatives"`
	NotFixes     []string           `json:"not_fixes"`
}

// pawsAlternatives keep the SNAT race away from the traffic without
// remapping it onto tuples servers still hold.
var pawsAlternatives = []string{
	"keep port preservation for the rule that carries many short connections to one server port (HTTP/1.0, health checks, a connection per request): --exclude owner=NAME or --exclude chain=NAME, where `snatrace audit --interval 60s` shows no race on it; it remaps only pods that meet on one port number (fewer rejections, none for a single client)",
	"reuse connections (HTTP keep-alive, connection pools): no short connections, no TIME_WAIT to meet",
	"widen the pods' net.ipv4.ip_local_port_range: a pod that reuses its ports less often frees fewer tuples that servers still hold",
	"give the NAT more source addresses or a wider port range: lowers the odds that a remapped flow lands on a held tuple, does not remove them",
}

// pawsNotFixes look like fixes and are not.
var pawsNotFixes = []string{
	"net.ipv4.tcp_tw_reuse: it lets a client reuse its own TIME_WAIT ports; here the server holds the TIME_WAIT",
	"net.ipv4.tcp_timestamps=0 on the clients: the server then judges the SYN by its sequence number, which the kernel hashes with the ports too",
	"--random instead of --random-fully: on 5.0 and later it remaps just the same",
	"shorter conntrack TIME_WAIT timeouts on the node: they free tuples sooner while servers still hold them, more remaps land there",
}

// notePAWS gives p the PAWS note of the kernel's timestamp offsets, which
// ts is asked for only when p changes something.
func notePAWS(p *Plan, ts func() *tsoffset.Detection) {
	if len(p.Changes) > 0 && ts != nil {
		p.PAWS = pawsNote(ts(), len(p.Changes))
	}
}

// pawsNote is the plan's PAWS note for the kernel's timestamp offsets, nil
// when they are not per-port or unknown or the plan changes nothing.
func pawsNote(ts *tsoffset.Detection, changes int) *PAWSNote {
	if ts == nil || changes == 0 || ts.Kind != tsoffset.PerPort && ts.Kind != tsoffset.Unknown {
		return nil
	}
	n := &PAWSNote{TSOffsets: *ts, Alternatives: pawsAlternatives, NotFixes: pawsNotFixes}
	n.TSOffsets.Samples = nil
	rules := text.Plural(changes, "this rule maps", "these rules map")
	if ts.Kind == tsoffset.PerPort {
		n.Message = "this kernel's TCP timestamp offsets depend on the ports (" + ts.Reason + "): once fully-random, " + rules +
			" connections onto source ports other than their own, and a short connection that lands on a tuple a server still holds in TIME_WAIT (60 s after the server closed it) is rejected by the server's PAWS check about half of the time — a retransmitted SYN, ms or 2 s late. fully-random removes SNAT clashes and adds these delays: weigh both on your traffic (snatrace lab --workload short shows both on this kernel)"
	} else {
		n.Message = "whether this kernel's TCP timestamp offsets depend on the ports is not known (" + ts.Reason + "); if they do (7.0, stable 6.12.94 and 6.1.191 on), fully-random adds PAWS delays at servers' TIME_WAIT for short connections: snatrace lab --workload short measures it on this kernel"
	}
	return n
}

// writePAWS writes a plan's PAWS note.
func writePAWS(ew *text.Writer, n *PAWSNote) {
	if n == nil {
		return
	}
	ew.Printf("\nOn this kernel: %s.\n", n.Message)
	ew.Printf("Alternatives:\n")
	for _, a := range n.Alternatives {
		ew.Printf("  - %s\n", a)
	}
	ew.Printf("Not fixes:\n")
	for _, a := range n.NotFixes {
		ew.Printf("  - %s\n", a)
	}
}
