//go:build linux

package lab

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/netns"
)

func needRoot(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t, "CAP_NET_ADMIN and CAP_SYS_ADMIN")
}

// TestBuildConnectClose builds a small topology, connects from a pod to the
// server through the node, and checks Close leaves no namespace behind.
func TestBuildConnectClose(t *testing.T) {
	needRoot(t)
	prefix := NewPrefix()
	topo, err := Build(context.Background(), TopologyConfig{Prefix: prefix, Pods: 3, Servers: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { topo.Close() })
	names, _ := netns.List(prefix)
	if len(names) != 1+3+2 {
		t.Fatalf("namespaces %v, want node + 3 pods + 2 servers", names)
	}
	for _, srv := range topo.Servers {
		var ln net.Listener
		if err := srv.NS.Do(func() (err error) {
			ln, err = net.Listen("tcp4", srv.Addr.String()+":8080")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		for _, pod := range topo.Pods {
			if err := pod.NS.Do(func() error {
				c, err := net.DialTimeout("tcp4", srv.Addr.String()+":8080", 2*time.Second)
				if err != nil {
					return err
				}
				return c.Close()
			}); err != nil {
				t.Fatalf("pod %s -> server %s: %v", pod.Addr, srv.Addr, err)
			}
		}
	}
	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	if left, _ := netns.List(prefix); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}

func TestCleanupRefusesForeignPrefix(t *testing.T) {
	_, err := Cleanup("cni-")
	if err == nil || !strings.Contains(err.Error(), `must start with "snt-"`) {
		t.Fatalf("Cleanup(cni-) = %v", err)
	}
}
