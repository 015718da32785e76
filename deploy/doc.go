// Package deploy holds no code: it is the home of the Kubernetes manifests
// (kubernetes/), the Prometheus alert rules (prometheus/) and the Grafana
// dashboard for snatrace exporter, and of the tests that validate them
// against the Kubernetes and Prometheus Operator API types, promtool and the
// metrics the exporter really serves.
package deploy
