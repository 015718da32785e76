package top

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"golang.org/x/sync/errgroup"
)

// DefaultWindow is the range of the rate and clash count.
const DefaultWindow = 5 * time.Minute

// ErrNoSeries is returned when the Prometheus answers but holds no snatrace
// series: no exporter is scraped, or it is scraped under other names.
var ErrNoSeries = errors.New("no snatrace series")

// Options says what to ask.
type Options struct {
	// Window is the range of the clash rate and count (DefaultWindow if 0).
	Window time.Duration
	// Now is the evaluation time (time.Now if zero).
	Now time.Time
}

// Node is one row: a scraped exporter, named by its node label (the
// ServiceMonitor's), or its instance when it has none.
type Node struct {
	Node     string `json:"node"`
	Instance string `json:"instance"`
	// Scraped is false when the exporter was seen in the last hour but has
	// no current series (down, or no longer scraped).
	Scraped bool `json:"scraped"`
	// RacingRules counts the rules that can race, by owner: plain
	// MASQUERADE/SNAT, or random on a kernel before 5.0.
	RacingRules map[string]int `json:"racing_rules"`
	RacingTotal int            `json:"racing_rules_total"`
	Rules       int            `json:"rules_total"`
	// ClashesPerSecond is rate(insert_failed) over the window, summed over
	// CPUs; Clashes is the exact rise of the counters within it.
	ClashesPerSecond float64 `json:"clash_drops_per_second"`
	Clashes          float64 `json:"clash_drops_in_window"`
	Entries          float64 `json:"conntrack_entries"`
	Max              float64 `json:"conntrack_max"`
	// Fill is Entries/Max, or -1 when the table size is unknown.
	Fill float64 `json:"conntrack_fill"`
	// LastAudit is when the exporter's last successful audit ended (zero:
	// none exported).
	LastAudit time.Time `json:"last_audit,omitzero"`
	// Failing lists the exporter's sources whose last read failed
	// (snatrace_scrape_error == 1): "audit", "proc", "rules_iptables_legacy"...
	Failing []string `json:"failing_sources"`
}

// Report is the cluster view at one time.
type Report struct {
	Prometheus string        `json:"prometheus"`
	Time       time.Time     `json:"time"`
	Window     time.Duration `json:"-"`
	WindowText string        `json:"window"`
	Nodes      []Node        `json:"nodes"`
}

// Query asks api (the Prometheus at addr, named in errors) for every
// node's row and returns them worst first: most clashes per second, then
// most clashes in the window, most racing rules, fullest table, by name.
// A Prometheus that cannot be queried is an error naming addr; one without
// snatrace series is ErrNoSeries.
func Query(ctx context.Context, api v1.API, addr string, o Options) (*Report, error) {
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	qs := queries(model.Duration(o.Window).String())
	res := make([]model.Vector, len(qs))
	// The rows first, alone: it tells an unreachable Prometheus, and one
	// without snatrace series, before anything else is asked.
	seen, err := instant(ctx, api, qs[0].expr, o.Now)
	if err != nil {
		return nil, fmt.Errorf("cannot query the Prometheus at %s: %w", addr, err)
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("the Prometheus at %s has %w (no snatrace_build_info in the last hour): is snatrace exporter scraped? (deploy/kubernetes/servicemonitor.yaml, docs/deploy.md)", addr, ErrNoSeries)
	}
	res[0] = seen
	g, gctx := errgroup.WithContext(ctx)
	for i := 1; i < len(qs); i++ {
		g.Go(func() error {
			v, err := instant(gctx, api, qs[i].expr, o.Now)
			if err != nil {
				return fmt.Errorf("querying the Prometheus at %s (%s): %w", addr, qs[i].expr, err)
			}
			res[i] = v
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	nodes := assemble(qs, res)
	Sort(nodes)
	return &Report{Prometheus: addr, Time: o.Now, Window: o.Window, WindowText: model.Duration(o.Window).String(), Nodes: nodes}, nil
}

// instant runs an instant query that must return a vector.
func instant(ctx context.Context, api v1.API, expr string, at time.Time) (model.Vector, error) {
	v, _, _, err := api.Query(ctx, expr, at)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, fmt.Errorf("an answer without a result")
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("a %s, not an instant vector", v.Type())
	}
	return vec, nil
}

// Sort orders nodes worst first (see Query).
func Sort(nodes []Node) {
	sort.SliceStable(nodes, func(i, j int) bool {
		a, b := nodes[i], nodes[j]
		switch {
		case a.ClashesPerSecond != b.ClashesPerSecond:
			return a.ClashesPerSecond > b.ClashesPerSecond
		case a.Clashes != b.Clashes:
			return a.Clashes > b.Clashes
		case a.RacingTotal != b.RacingTotal:
			return a.RacingTotal > b.RacingTotal
		case a.Fill != b.Fill:
			return a.Fill > b.Fill
		}
		return a.Node < b.Node
	})
}
