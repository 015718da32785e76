//go:build linux

// Package labtest opens lab sessions for other packages' privileged tests:
// a real racing NAT node under the tool being tested (audit, fix, exporter,
// trace), skipped without root and removed when the test ends.
package labtest

import (
	"context"
	"testing"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/lab"
	"github.com/snatrace/snatrace/natrule"
)

// Open opens a lab session for t (topology and servers, no rule) and closes
// it when t ends.
func Open(t testing.TB, cfg lab.Config) *lab.Session {
	t.Helper()
	testenv.NeedRoot(t, "builds lab namespaces (CAP_SYS_ADMIN, CAP_NET_ADMIN)")
	s, err := lab.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("closing the lab: %v", err)
		}
	})
	return s
}

// Node is Open with mode (nft statement syntax) installed through backend,
// and the node namespace's inode, which the eBPF tracer filters on.
func Node(t testing.TB, cfg lab.Config, mode string, backend natrule.Backend) (*lab.Session, uint32) {
	t.Helper()
	m, err := natrule.ParseMode(mode)
	if err != nil {
		t.Fatal(err)
	}
	s := Open(t, cfg)
	if err := s.Install(context.Background(), m, backend); err != nil {
		t.Fatal(err)
	}
	ino, err := s.Node().Inode()
	if err != nil {
		t.Fatal(err)
	}
	return s, ino
}
