// Package top is the cluster view of the SNAT source-port race: one row per
// node that a Prometheus scrapes snatrace exporter on, built from that
// Prometheus alone (the raw snatrace_* series, so the alert rules need not be
// installed): racing rules by owner, SNAT-clash drops per second and in the
// window, conntrack table fill, the age of the last audit and what the
// exporter fails to read, worst node first.
//
// It exists because an operator with fifty nodes asks "which of them race?"
// before "why?": audit answers the second on one node, top the first for all.
package top
