// Package netnstest gives tests throwaway network namespaces and a way to run
// the real netfilter tools (nft, iptables-*-restore, iptables-*-save) inside
// them, so that a privileged test never touches the host namespace.
package netnstest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snatrace/snatrace/netns"
)

var seq atomic.Int64

// New creates a fresh namespace for t named "snt-<tag>-<pid>-<n>", and
// deletes it when t ends (failing t if that fails). It skips t when the
// process is not root: namespaces need CAP_SYS_ADMIN.
func New(t testing.TB, tag string) *netns.NS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN): creates a network namespace")
	}
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
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("needs %s (.ci/run installs it)", name)
	}
	out, err := RunErr(ns, stdin, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// RunErr is Run for callers that expect a failure or have no t: the command
// is bounded to 30 s and its error carries its stderr.
func RunErr(ns *netns.NS, stdin, name string, args ...string) (string, error) {
	var out, stderr bytes.Buffer
	err := ns.Do(func() error {
		// The child is forked from Do's locked thread, so it starts in ns.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Stdout, cmd.Stderr = &out, &stderr
		return cmd.Run()
	})
	if err != nil {
		return "", fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), ns, err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}
