package main

import (
	"context"
	"encoding/json"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/spf13/cobra"

	"github.com/snatrace/snatrace/top"
)

func init() { register(newTopCmd) }

type topOpts struct {
	prometheus string
	window     time.Duration
	timeout    time.Duration
	jsonOut    bool
}

const topLong = `top shows which nodes of the cluster race, from the Prometheus that scrapes
snatrace exporter on every node (deploy/kubernetes or deploy/helm): one row per
node, worst first.

  RACING RULES   SNAT/MASQUERADE rules that keep source ports (no fully-random;
                 random on a kernel before 5.0), by owner: docker, kube-proxy...
  CLASHES/S      SYNs dropped by the SNAT race per second over --window
                 (rate of conntrack insert_failed, all CPUs)
  CLASHES <w>    how many in the window (the counters' exact rise)
  CONNTRACK      table fill, entries / nf_conntrack_max
  LAST AUDIT     age of the exporter's last successful rule audit
  PROBLEMS       what the exporter fails to read (e.g. "audit failing": it
                 lacks CAP_NET_ADMIN), or that it is no longer scraped

It reads the exporter's own series, so the alert rules need not be installed.
Nodes are named by the "node" label (the ServiceMonitor adds it), else by
instance. Then, on the worst node: snatrace audit, snatrace fix.

Exit codes: 0 the table was printed; 2 the Prometheus cannot be reached or
queried, or holds no snatrace series (the message says which).`

func newTopCmd() *cobra.Command {
	var o topOpts
	cmd := &cobra.Command{
		Use:   "top --prometheus URL",
		Short: "Which nodes of the cluster race: one table from Prometheus, worst first",
		Long:  topLong,
		Example: `  snatrace top --prometheus http://prometheus.monitoring:9090
  kubectl -n monitoring port-forward svc/prometheus-operated 9090 &
  snatrace top --prometheus http://127.0.0.1:9090 --window 1h --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := o.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			rep, err := top.Query(ctx, v1.NewAPI(client), o.prometheus, top.Options{Window: o.window})
			if err != nil {
				return envErr(err)
			}
			if o.jsonOut {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return rep.WriteText(cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.prometheus, "prometheus", "", "URL of the Prometheus that scrapes snatrace exporter (required)")
	f.DurationVar(&o.window, "window", top.DefaultWindow, "range of the clash rate and count")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "give up on the Prometheus after this long")
	f.BoolVar(&o.jsonOut, "json", false, "print one JSON document")
	return cmd
}

// client checks the flags and returns the Prometheus API client.
func (o topOpts) client() (api.Client, error) {
	switch {
	case o.prometheus == "":
		return nil, usageErr("--prometheus URL: the Prometheus that scrapes snatrace exporter, e.g. http://127.0.0.1:9090")
	case o.window < time.Second:
		return nil, usageErr("--window %v: must be at least 1s", o.window)
	case o.timeout <= 0:
		return nil, usageErr("--timeout %v: must be positive", o.timeout)
	}
	u, err := url.Parse(o.prometheus)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageErr("--prometheus %q: want an http:// or https:// URL", o.prometheus)
	}
	c, err := api.NewClient(api.Config{Address: o.prometheus})
	if err != nil {
		return nil, usageErr("--prometheus: %w", err)
	}
	return c, nil
}
