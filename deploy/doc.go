// Package deploy holds no code: it is the home of the Kubernetes manifests
// (kubernetes/), the Helm chart (helm/snatrace), the image (image/), the
// Prometheus alert rules (prometheus/) and the Grafana dashboard for
// snatrace exporter, and of the tests that validate them against the
// Kubernetes and Prometheus Operator API types, promtool, helm and the
// metrics the exporter really serves, and run the image as the DaemonSet
// runs it, scraped by a real Prometheus (docs/deploy.md).
package deploy
