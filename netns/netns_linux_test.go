//go:build linux

package netns

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN) to create network namespaces")
	}
}

func threadNetNSInode(t *testing.T) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestCreateDoDelete(t *testing.T) {
	needRoot(t)
	name := fmt.Sprintf("snt-t%d-ns", os.Getpid())
	host := threadNetNSInode(t)
	ns, err := Create(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Delete() })

	if _, err := Create(name); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create(%q) = %v, want ErrExists", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(ns.Fd(), &st); err != nil {
		t.Fatal(err)
	}
	var inside uint64
	if err := ns.Do(func() error { inside = threadNetNSInode(t); return nil }); err != nil {
		t.Fatal(err)
	}
	if inside != st.Ino || inside == host {
		t.Fatalf("Do ran in namespace inode %d, want %d (host %d)", inside, st.Ino, host)
	}
	if now := threadNetNSInode(t); now != host {
		t.Fatalf("caller's thread moved to namespace %d", now)
	}
	want := errors.New("boom")
	if err := ns.Do(func() error { return want }); !errors.Is(err, want) {
		t.Fatalf("Do error = %v, want %v", err, want)
	}
	if err := ns.Do(func() error { panic("inside") }); err == nil {
		t.Fatal("Do swallowed a panic")
	}
	names, err := List(fmt.Sprintf("snt-t%d-", os.Getpid()))
	if err != nil || len(names) != 1 || names[0] != name {
		t.Fatalf("List = %v, %v; want [%s]", names, err, name)
	}
	if err := ns.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(Dir + "/" + name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("namespace file still there after Delete: %v", err)
	}
	if err := Delete(name); err != nil {
		t.Fatalf("deleting a deleted namespace: %v", err)
	}
}

func TestOpenRejectsNonNamespace(t *testing.T) {
	if _, err := Open("/etc/hostname"); err == nil {
		t.Fatal("Open(/etc/hostname) succeeded")
	}
	if _, err := Open("snt-does-not-exist"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open(missing) = %v, want ErrNotExist", err)
	}
}
