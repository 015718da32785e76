//go:build linux

package trace

import (
	"testing"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/netns/netnstest"
)

// The reply checker holds a ctnetlink socket in at most max namespaces:
// drops in more namespaces than that (pod churn) do not grow its sockets,
// and each namespace it drops is reachable again on its next drop.
func TestReplyCheckerBoundsSockets(t *testing.T) {
	testenv.NeedRoot(t, "CAP_SYS_ADMIN and CAP_NET_ADMIN")
	c := newReplyChecker()
	defer c.Close()
	c.conns.max = 3
	base := testenv.OpenFDs(t)
	var inodes []uint32
	for i := range 6 {
		ns := netnstest.New(t, "rc"+string(rune('a'+i)))
		inode, err := ns.Inode()
		if err != nil {
			t.Fatal(err)
		}
		inodes = append(inodes, inode)
	}
	base += 6 // the namespaces netnstest keeps open
	for _, inode := range inodes {
		if _, err := c.conns.get(inode); err != nil {
			t.Fatalf("namespace %d: %v", inode, err)
		}
	}
	if got := testenv.OpenFDs(t) - base; got != 3 || c.conns.len() != 3 {
		t.Fatalf("after drops in 6 namespaces: %d new fds, %d held; want 3 and 3", got, c.conns.len())
	}
	if _, err := c.conns.get(inodes[0]); err != nil {
		t.Errorf("evicted namespace not reachable again: %v", err)
	}
	if err := c.Close(); err != nil || testenv.OpenFDs(t) != base {
		t.Errorf("Close: %v, %d fds left of the checker's", err, testenv.OpenFDs(t)-base)
	}
}
