// Package owners holds snatrace's end-to-end tests against the real
// software that writes NAT rules — Docker Engine, Podman with netavark,
// libvirt, the CNI reference plugins, firewalld — each started inside a
// throwaway network namespace, left to write its own rules, and then audited,
// fixed, watched and rolled back with the snatrace command, as a user would.
// The package has no code of its own: `go test ./owners` runs the tests
// (root; in CI they never skip), and docs/audit.md's owner table is their
// output.
package owners
