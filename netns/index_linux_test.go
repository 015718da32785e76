//go:build linux

package netns

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"
)

// A burst of lookups for namespaces the last scan did not see costs one scan
// per MinScan, not one per lookup; a namespace made after a scan is found
// once MinScan has passed.
func TestIndexRescansAtMostOncePerMinScan(t *testing.T) {
	needRoot(t)
	clock := time.Unix(1000, 0)
	x := &Index{Now: func() time.Time { return clock }}
	own, err := (*NS)(nil).Inode()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := x.Open(own)
	if err != nil {
		t.Fatalf("own namespace: %v", err)
	}
	ns.Close()

	name := fmt.Sprintf("snt-t%d-idx", os.Getpid())
	created, err := Create(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { created.Delete() })
	inode, err := created.Inode()
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		if _, err := x.Open(inode); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("namespace made after the scan, within MinScan: %v, want ErrNotExist", err)
		}
	}
	if x.Scans() != 1 {
		t.Fatalf("%d scans for 1001 lookups within MinScan, want 1", x.Scans())
	}
	clock = clock.Add(DefaultMinScan)
	ns, err = x.Open(inode)
	if err != nil {
		t.Fatalf("after MinScan: %v", err)
	}
	defer ns.Close()
	if got, _ := ns.Inode(); got != inode || x.Scans() != 2 {
		t.Errorf("opened inode %d after %d scans, want %d after 2", got, x.Scans(), inode)
	}
	// Found again from the map: no scan.
	again, err := x.Open(inode)
	if err != nil || x.Scans() != 2 {
		t.Fatalf("second open: %v, %d scans", err, x.Scans())
	}
	again.Close()
}
