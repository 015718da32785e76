// Package testenv holds the preconditions of snatrace's privileged tests in
// one place: a test that cannot run says why and skips, except in CI, where
// the environment is made for every test and a skip hides a broken one.
package testenv

import (
	"os"
	"testing"
)

// CI reports whether the tests run in CI (CI=true, set by .ci/run).
func CI() bool { return os.Getenv("CI") == "true" }

// Skip skips t with the reason, or fails it in CI.
func Skip(t testing.TB, format string, a ...any) {
	t.Helper()
	if CI() {
		t.Fatalf("cannot run in CI: "+format, a...)
	}
	t.Skipf(format, a...)
}

// NeedRoot skips t (fails it in CI) unless the process is root; why says
// what the test does that needs it.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root: %s", why)
	}
}
