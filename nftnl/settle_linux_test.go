//go:build linux

package nftnl_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/snatrace/snatrace/netns/netnstest"
	"github.com/snatrace/snatrace/nftnl"
)

// Settle passes the namespace's commit lock with an empty batch: it reports
// whether the generation is still the one given, and starts no generation
// and no event of its own (an exporter that follows commits must not wake
// itself). A refusal leaves the socket usable.
func TestSettle(t *testing.T) {
	ns := netnstest.New(t, "settle")
	c, err := nftnl.Dial(nftnl.WithNetNS(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mon, err := nftnl.NewMonitor(ns)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		commits []uint32
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- mon.RunCommits(ctx, func(cm nftnl.Commit) { mu.Lock(); commits = append(commits, cm.Gen); mu.Unlock() })
	}()
	defer func() { cancel(); <-done }()

	gen0 := generation(t, c)
	for range 3 {
		if ok, err := c.Settle(gen0); !ok || err != nil {
			t.Fatalf("Settle(%d) on a quiet ruleset = %v, %v; want true", gen0, ok, err)
		}
	}
	if g := generation(t, c); g != gen0 {
		t.Fatalf("three Settles moved the generation from %d to %d", gen0, g)
	}
	netnstest.Run(t, ns, "", "nft", "add", "table", "ip", "settle")
	if ok, err := c.Settle(gen0); ok || err != nil {
		t.Fatalf("Settle(%d) after a commit = %v, %v; want false", gen0, ok, err)
	}
	gen1 := generation(t, c)
	if ok, err := c.Settle(gen1); !ok || err != nil || gen1 == gen0 {
		t.Fatalf("Settle(%d) = %v, %v (generation before the commit %d); want true", gen1, ok, err, gen0)
	}
	time.Sleep(200 * time.Millisecond) // events arrive just after their commit
	mu.Lock()
	defer mu.Unlock()
	if len(commits) != 1 || commits[0] != gen1 {
		t.Errorf("monitor saw commits %v; want only the table's, %d", commits, gen1)
	}
}

func generation(t *testing.T, c *nftnl.Conn) uint32 {
	t.Helper()
	g, err := c.Generation()
	if err != nil {
		t.Fatal(err)
	}
	return g
}
