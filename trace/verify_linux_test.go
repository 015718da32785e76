//go:build linux

package trace

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFindNetNS(t *testing.T) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		t.Skipf("no /proc/self/ns/net: %v", err)
	}
	p, err := findNetNS(uint32(st.Ino))
	if err != nil {
		t.Fatalf("findNetNS(own namespace): %v", err)
	}
	var got unix.Stat_t
	if err := unix.Stat(p, &got); err != nil || got.Ino != st.Ino {
		t.Errorf("findNetNS returned %s (inode %d, %v), want inode %d", p, got.Ino, err, st.Ino)
	}
	if _, err := findNetNS(1); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("findNetNS(1): %v, want ErrNotExist", err)
	}
}

// TestFindNetNSHeldFD finds a namespace that only an open descriptor holds.
func TestFindNetNSHeldFD(t *testing.T) {
	needRoot(t)
	f := newFixture(t, 1)
	fd, err := unix.Open("/run/netns/"+f.server, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	run(t, "ip", "netns", "del", f.server) // now only fd holds it
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	p, err := findNetNS(uint32(st.Ino))
	if err != nil {
		t.Fatalf("findNetNS(namespace held by fd %d): %v", fd, err)
	}
	var got unix.Stat_t
	if err := unix.Stat(p, &got); err != nil || got.Ino != st.Ino {
		t.Errorf("findNetNS returned %s, not the held namespace", p)
	}
}
