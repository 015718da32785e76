package top

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/snatrace/snatrace/internal/golden"
)

// sample is one series of a fake answer: labels and value.
type sample struct {
	labels map[string]string
	value  string
}

func s(value string, kv ...string) sample {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return sample{m, value}
}

// fakePrometheus answers /api/v1/query as Prometheus does, from answers
// keyed by field; a query it does not know fails the test.
func fakePrometheus(t *testing.T, w string, answers map[field][]sample) *httptest.Server {
	t.Helper()
	byExpr := map[string][]sample{}
	for _, q := range queries(w) {
		byExpr[q.expr] = answers[q.f]
	}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		ss, ok := byExpr[r.Form.Get("query")]
		if r.URL.Path != "/api/v1/query" || !ok {
			t.Errorf("unexpected request %s %q", r.URL.Path, r.Form.Get("query"))
			http.Error(rw, "no", http.StatusBadRequest)
			return
		}
		type result struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		res := []result{}
		for _, x := range ss {
			res = append(res, result{x.labels, [2]any{1796000000.0, x.value}})
		}
		json.NewEncoder(rw).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": res}})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func apiFor(t *testing.T, url string) v1.API {
	t.Helper()
	c, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		t.Fatal(err)
	}
	return v1.NewAPI(c)
}

// now is the evaluation time of the tests (1796000000 = 2026-11-30).
var now = time.Unix(1796000000, 0).UTC()

// cluster: node-a races (Docker and an unknown owner, clashes), node-b has
// only fully-random rules and a nearly full table, node-c's exporter lacks
// CAP_NET_ADMIN (audit failing, never audited) and node-d is no longer
// scraped; node-e runs on a legacy kernel with --random rules and has no
// node label.
func cluster() map[field][]sample {
	a, b, c, d := []string{"instance", "10.0.0.1:9808", "node", "node-a"}, []string{"instance", "10.0.0.2:9808", "node", "node-b"},
		[]string{"instance", "10.0.0.3:9808", "node", "node-c"}, []string{"instance", "10.0.0.4:9808", "node", "node-d"}
	e := []string{"instance", "10.0.0.5:9808"}
	return map[field][]sample{
		fSeen:    {s("1", a...), s("1", b...), s("1", c...), s("1", d...), s("1", e...)},
		fLive:    {s("1", a...), s("1", b...), s("1", c...), s("1", e...)},
		fRacing:  {s("2", append(a, "owner", "docker")...), s("1", append(a, "owner", "unknown")...), s("1", append(e, "owner", "calico")...)},
		fRules:   {s("3", a...), s("3", b...), s("1", e...)},
		fRate:    {s("0.1", a...), s("0", b...), s("0", c...), s("0", e...)},
		fClashes: {s("30", a...), s("0", b...), s("0", c...), s("0", e...)},
		fEntries: {s("1200", a...), s("9500", b...), s("10", c...), s("40", e...)},
		fMax:     {s("262144", a...), s("10000", b...), s("262144", e...)},
		fAudit:   {s("1795999990", a...), s("1795999700.5", b...), s("1795999999", e...)},
		fFailing: {s("1", append(c, "source", "audit")...), s("1", append(c, "source", "max")...)},
	}
}

// TestQuery: the rows, worst first, as text and JSON (goldens) and by field.
func TestQuery(t *testing.T) {
	srv := fakePrometheus(t, "5m", cluster())
	rep, err := Query(context.Background(), apiFor(t, srv.URL), "http://prometheus:9090", Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, n := range rep.Nodes {
		order = append(order, n.Node)
	}
	if got, want := strings.Join(order, " "), "node-a 10.0.0.5:9808 node-b node-c node-d"; got != want {
		t.Errorf("order %q, want %q", got, want)
	}
	a := rep.Nodes[0]
	if a.RacingTotal != 3 || a.RacingRules["docker"] != 2 || a.Rules != 3 || a.Clashes != 30 || a.ClashesPerSecond != 0.1 ||
		a.Fill != 1200.0/262144 || !a.LastAudit.Equal(now.Add(-10*time.Second)) || !a.Scraped || len(a.Failing) != 0 {
		t.Errorf("node-a: %+v", a)
	}
	if c := rep.Nodes[3]; c.Fill != -1 || fmt.Sprint(c.Failing) != "[audit max]" || !c.LastAudit.IsZero() {
		t.Errorf("node-c: %+v", c)
	}
	if d := rep.Nodes[4]; d.Scraped {
		t.Errorf("node-d scraped: %+v", d)
	}
	var txt, js bytes.Buffer
	if err := rep.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	enc := json.NewEncoder(&js)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/cluster.txt", txt.Bytes())
	golden.Check(t, "testdata/cluster.json", js.Bytes())
}

// TestQueryErrors: what is missing is named, never an empty table.
func TestQueryErrors(t *testing.T) {
	empty := fakePrometheus(t, "5m", map[field][]sample{})
	notProm := httptest.NewServer(http.NotFoundHandler())
	defer notProm.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, tc := range []struct {
		name, url, want string
		noSeries        bool
	}{
		{"no snatrace series", empty.URL, "the Prometheus at X has no snatrace series (no snatrace_build_info in the last hour): is snatrace exporter scraped? (deploy/kubernetes/servicemonitor.yaml, docs/deploy.md)", true},
		{"not a Prometheus", notProm.URL, "cannot query the Prometheus at X: client_error: client error: 404", false},
		{"unreachable", closed.URL, "cannot query the Prometheus at X: Post", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Query(context.Background(), apiFor(t, tc.url), "X", Options{Now: now})
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) || errors.Is(err, ErrNoSeries) != tc.noSeries {
				t.Errorf("err %v, want %q (no series: %v)", err, tc.want, tc.noSeries)
			}
		})
	}
}

// TestSortTies: equal rows keep a total order by name.
func TestSortTies(t *testing.T) {
	n := []Node{{Node: "b", Fill: 0.5}, {Node: "a", Fill: 0.5}, {Node: "c", Fill: 0.9}, {Node: "d", RacingTotal: 1, Fill: -1}}
	Sort(n)
	if got := fmt.Sprint(n[0].Node, n[1].Node, n[2].Node, n[3].Node); got != "dcab" {
		t.Errorf("order %s", got)
	}
}
