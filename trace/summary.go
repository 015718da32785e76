package trace

import (
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Count is one row of a summary: a destination or source and how many.
type Count struct {
	Key   string `json:"key"`
	Count uint64 `json:"count"`
}

// Summary is what a trace saw, for the end of `snatrace trace`.
type Summary struct {
	Duration    time.Duration `json:"duration_ns"`
	Mode        Mode          `json:"mode"`
	SNATClashes uint64        `json:"snat_clashes"`
	OtherDrops  uint64        `json:"other_drops"`
	// UDPSNATClashes are the UDP datagrams among SNATClashes: each cost its
	// client a resolver timeout (5 s with glibc).
	UDPSNATClashes uint64 `json:"udp_snat_clashes"`
	// ResolvedClashes are UDP clashes the kernel resolved at confirm
	// (merged or inserted, nothing lost), kept apart from the drops.
	ResolvedClashes uint64 `json:"resolved_clashes"`
	// ByDestination counts SNAT clashes per destination ip:port, most first.
	ByDestination []Count `json:"by_destination"`
	// BySource counts SNAT clashes per source pod address, most first.
	BySource []Count `json:"by_source"`
	// Retransmits counts SYN retransmissions per destination, most first.
	Retransmits []Count `json:"syn_retransmits"`
	// Lost counts events the kernel could not deliver (ring buffer full).
	Lost uint64 `json:"lost"`
}

// Summarizer accumulates events into a Summary. The zero value is ready.
type Summarizer struct {
	clashes, others    uint64
	udpClashes, solved uint64
	byDst              map[netip.AddrPort]uint64
	bySrc              map[netip.Addr]uint64
}

// Add counts ev.
func (s *Summarizer) Add(ev Event) {
	if ev.Kind.Resolved() {
		s.solved++
		return
	}
	if ev.Kind != KindSNATClash {
		s.others++
		return
	}
	if ev.Proto == "udp" {
		s.udpClashes++
	}
	if s.byDst == nil {
		s.byDst = make(map[netip.AddrPort]uint64)
		s.bySrc = make(map[netip.Addr]uint64)
	}
	s.clashes++
	s.byDst[ev.Orig.Dst]++
	s.bySrc[ev.Orig.Src.Addr()]++
}

// Summary returns the counts so far with the retransmissions and stats read
// from the tracer.
func (s *Summarizer) Summary(d time.Duration, mode Mode, retransmits map[netip.AddrPort]uint64, st Stats) Summary {
	return Summary{
		Duration:        d,
		Mode:            mode,
		SNATClashes:     s.clashes,
		OtherDrops:      s.others,
		UDPSNATClashes:  s.udpClashes,
		ResolvedClashes: s.solved,
		ByDestination:   ranked(s.byDst, netip.AddrPort.Compare),
		BySource:        ranked(s.bySrc, netip.Addr.Compare),
		Retransmits:     ranked(retransmits, netip.AddrPort.Compare),
		Lost:            st.Lost,
	}
}

// ranked orders m by count, most first, then by key.
func ranked[K interface {
	comparable
	String() string
}](m map[K]uint64, compare func(K, K) int) []Count {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b K) int {
		if c := cmp.Compare(m[b], m[a]); c != 0 {
			return c
		}
		return compare(a, b)
	})
	out := make([]Count, len(keys))
	for i, k := range keys {
		out[i] = Count{Key: k.String(), Count: m[k]}
	}
	return out
}

// FormatEvent renders ev as one human line:
//
//	01:02:03.123456 snat_clash 10.77.0.10:20000 -> 198.18.5.2:80 nat 198.18.5.1:20000 cpu 1 netns 4026532177
//	01:02:03.123456 clash_merged udp 10.98.0.2:40000 -> 198.51.100.2:53 nat 198.51.100.1:40000 cpu 1 netns 4026532177
func FormatEvent(ev Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-10s", ev.Time.UTC().Format("15:04:05.000000"), ev.Kind)
	if ev.Proto == "udp" {
		b.WriteString(" udp")
	}
	fmt.Fprintf(&b, " %s", ev.Orig)
	if ev.NAT.Src.IsValid() {
		fmt.Fprintf(&b, " nat %s", ev.NAT.Src)
	}
	fmt.Fprintf(&b, " cpu %d netns %d", ev.CPU, ev.NetNS)
	if ev.Kind == KindSNATClash && ev.Evidence == EvidenceUnverified {
		b.WriteString(" (unverified)")
	}
	return b.String()
}

// WriteSummary renders s as human tables.
func WriteSummary(w io.Writer, s Summary) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "traced %s (%s): %d SNAT clash drops, %d other SYN drops", s.Duration.Round(time.Millisecond), s.Mode, s.SNATClashes, s.OtherDrops)
	if s.UDPSNATClashes > 0 || s.ResolvedClashes > 0 {
		fmt.Fprintf(tw, "; UDP: %d of the drops (each a resolver timeout), %d clashes resolved without loss", s.UDPSNATClashes, s.ResolvedClashes)
	}
	if s.Lost > 0 {
		fmt.Fprintf(tw, ", %d events lost", s.Lost)
	}
	fmt.Fprintln(tw)
	table := func(title, col string, rows []Count) {
		if len(rows) == 0 {
			return
		}
		fmt.Fprintf(tw, "\n%s\n%s\tcount\n", title, col)
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%d\n", r.Key, r.Count)
		}
	}
	table("SNAT clash drops by destination", "destination", s.ByDestination)
	table("SNAT clash drops by source pod", "source", s.BySource)
	table("SYN retransmissions by destination (each one a client waiting 1 s or more)", "destination", s.Retransmits)
	return tw.Flush()
}

// DestLabels bounds the cardinality of a per-destination metric label: the
// first limit distinct destinations seen keep their own label, every later one
// is labelled "other". Labels never move, so counters stay monotonic. Safe
// for concurrent use.
type DestLabels struct {
	limit int
	mu    sync.Mutex
	seen  map[netip.AddrPort]struct{}
}

// OtherLabel is the label of destinations past the limit.
const OtherLabel = "other"

// NewDestLabels returns a DestLabels that names at most limit destinations.
func NewDestLabels(limit int) *DestLabels {
	return &DestLabels{limit: limit, seen: make(map[netip.AddrPort]struct{})}
}

// Label returns the label value for dst.
func (d *DestLabels) Label(dst netip.AddrPort) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.seen[dst]; ok {
		return dst.String()
	}
	if len(d.seen) >= d.limit {
		return OtherLabel
	}
	d.seen[dst] = struct{}{}
	return dst.String()
}
