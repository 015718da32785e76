// Package exporter serves snatrace's view of a node to Prometheus: conntrack
// counters per CPU (read from the kernel at scrape time, ctnetlink first and
// /proc as fallback), the SNAT rules and audit findings (refreshed in the
// background every audit interval), and build and kernel information.
//
// It exists because the SNAT race is intermittent: a one-off audit can miss
// it, while insert_failed rising on a node whose rules can race is an alert.
// Everything that touches the kernel or the rule audit is injected (Option),
// so the collector is tested on recorded statistics.
package exporter
