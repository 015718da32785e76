//go:build linux

package netnstest

import (
	"strings"
	"testing"

	"github.com/snatrace/snatrace/netns"
)

func TestNewRun(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		ns := New(t, "nt")
		name = ns.Name()
		if !strings.HasPrefix(name, "snt-nt-") {
			t.Fatalf("name %q", name)
		}
		// Inside, only lo exists: the command really ran in the namespace.
		out := Run(t, ns, "", "cat", "/proc/self/net/dev")
		if !strings.Contains(out, "lo:") || strings.Count(out, ":") != 1 {
			t.Fatalf("/proc/self/net/dev inside:\n%s", out)
		}
		if _, err := RunErr(ns, "", "false"); err == nil || err.Error() != "in "+name+": running false: exit status 1" {
			t.Fatalf("RunErr(false) = %v", err)
		}
	})
	if left, _ := netns.List(name); len(left) != 0 {
		t.Fatalf("%s not deleted at cleanup", name)
	}
}
