// Package netnstest gives tests throwaway network namespaces and a way to run
// the real netfilter tools (nft, iptables-*-restore, iptables-*-save) inside
// them, so that a privileged test never touches the host namespace.
package netnstest

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/tool"
)

var seq atomic.Int64

// New creates a fresh namespace for t named "snt-<tag>-<pid>-<n>", and
// deletes it when t ends (failing t if that fails). It skips t when the
// process is not root: namespaces need CAP_SYS_ADMIN.
func New(t testing.TB, tag string) *netns.NS {
	t.Helper()
	testenv.NeedRoot(t, "creates a network namespace (CAP_SYS_ADMIN, CAP_NET_ADMIN)")
	name := fmt.Sprintf("snt-%s-%d-%d", tag, os.Getpid(), seq.Add(1))
	ns, err := netns.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Delete(); err != nil {
			t.Errorf("deleting %s: %v", name, err)
		}
	})
	return ns
}

// Run runs name with args and stdin inside ns and returns its stdout. It
// skips t when the binary is not installed (.ci/run installs them) and fails
// t, with the command's stderr, when the command fails.
func Run(t testing.TB, ns *netns.NS, stdin, name string, args ...string) string {
	t.Helper()
	out, err := RunErr(ns, stdin, name, args...)
	if tool.IsMissing(err) {
		testenv.Skip(t, "needs %s (.ci/run installs it)", name)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// RunErr is Run for callers that expect a failure or have no t: the command
// runs through tool.Exec, bounded to 30 s, and its error carries its stderr.
func RunErr(ns *netns.NS, stdin, name string, args ...string) (string, error) {
	out, err := tool.Exec{NS: ns, Timeout: 30 * time.Second}.Run(context.Background(), tool.Command(name, args...).WithStdin(stdin))
	if err != nil {
		return "", fmt.Errorf("in %s: %w", ns, err)
	}
	return string(out), nil
}
