//go:build linux

package tool_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/snatrace/snatrace/netns/netnstest"
	. "github.com/snatrace/snatrace/tool"
)

func TestExecHere(t *testing.T) {
	cmd := Command("sh", "-c", "cat; echo $SNT_X; echo oops >&2").WithStdin("in\n")
	cmd.Env = []string{"SNT_X=1"}
	out, err := Exec{}.Run(context.Background(), cmd)
	if err != nil || string(out) != "in\n1\n" {
		t.Fatalf("Run = %q, %v", out, err)
	}
	_, err = Exec{}.Run(context.Background(), Command("sh", "-c", "echo bad >&2; exit 3"))
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 3 || ee.Stderr != "bad" || !strings.Contains(err.Error(), "running sh -c echo bad >&2; exit 3: exit status 3: bad") {
		t.Fatalf("a failing command gave %v", err)
	}
	if _, err := (Exec{}).Run(context.Background(), Command("snt-no-such-tool")); !IsMissing(err) {
		t.Fatalf("a missing tool gave %v", err)
	}
}

// TestExecInNamespace checks that a tool forked by Exec runs in the namespace.
func TestExecInNamespace(t *testing.T) {
	ns := netnstest.New(t, "tool")
	ino, err := ns.Inode()
	if err != nil {
		t.Fatal(err)
	}
	out, err := Exec{NS: ns}.Run(context.Background(), Command("readlink", "/proc/self/ns/net"))
	if err != nil {
		t.Fatal(err)
	}
	want := "net:[" + strconv.FormatUint(uint64(ino), 10) + "]"
	if strings.TrimSpace(string(out)) != want {
		t.Fatalf("the tool ran in %q, want %s", out, want)
	}
}
