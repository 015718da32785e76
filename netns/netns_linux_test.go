//go:build linux

package netns

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/snatrace/snatrace/internal/testenv"
	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t, "CAP_SYS_ADMIN")
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

func TestParseSpec(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Spec
		err  string
	}{
		{"snt-lab-node", Spec{Name: "snt-lab-node"}, ""},
		{"/proc/1/ns/net", Spec{Path: "/proc/1/ns/net"}, ""},
		{"./ns", Spec{Path: "./ns"}, ""},
		{"pid:42", Spec{PID: 42}, ""},
		{"4026532177", Spec{Inode: 4026532177}, ""},
		{"net:[4026532177]", Spec{Inode: 4026532177}, ""},
		{"", Spec{}, `network namespace "": want NAME, PATH, pid:PID or an inode number`},
		{"..", Spec{}, `network namespace "..": want NAME, PATH, pid:PID or an inode number`},
		{"pid:x", Spec{}, `network namespace "pid:x": want pid:PID with a process id`},
		{"pid:0", Spec{}, `network namespace "pid:0": want pid:PID with a process id`},
		{"net:[12", Spec{}, `network namespace "net:[12": want net:[INODE]`},
	} {
		got, err := ParseSpec(tt.in)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if got != tt.want || gotErr != tt.err {
			t.Errorf("ParseSpec(%q) = %+v, %q; want %+v, %q", tt.in, got, gotErr, tt.want, tt.err)
		}
		if err == nil && got.String() != tt.in && tt.in != "4026532177" {
			t.Errorf("Spec(%q).String() = %q", tt.in, got.String())
		}
	}
}

// TestOpenForms opens one namespace by name, path, pid and inode, and
// checks that each handle names the same namespace.
func TestOpenForms(t *testing.T) {
	needRoot(t)
	name := fmt.Sprintf("snt-t%d-forms", os.Getpid())
	ns, err := Create(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Delete() })
	want, err := ns.Inode()
	if err != nil {
		t.Fatal(err)
	}
	// A thread of this process in the namespace gives it a pid form.
	stop := make(chan struct{})
	tidc := make(chan int)
	go func() {
		if err := ns.Enter(); err != nil {
			close(tidc)
			return
		}
		tidc <- unix.Gettid()
		<-stop
	}()
	tid := <-tidc
	defer close(stop)
	forms := []string{name, Dir + "/" + name, fmt.Sprintf("pid:%d", tid), fmt.Sprint(want), fmt.Sprintf("net:[%d]", want)}
	for _, form := range forms {
		o, err := Open(form)
		if err != nil {
			t.Errorf("Open(%q): %v", form, err)
			continue
		}
		if got, _ := o.Inode(); got != want {
			t.Errorf("Open(%q) has inode %d, want %d", form, got, want)
		}
		o.Close()
	}
	if _, err := Open("1"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open of an inode nobody holds: %v, want ErrNotExist", err)
	}
	if _, err := Open(fmt.Sprintf("/proc/%d/ns/mnt", os.Getpid())); err == nil || !strings.Contains(err.Error(), "not a network namespace") {
		t.Errorf("Open of a mount namespace: %v", err)
	}
}

// TestNilNS: the nil NS is the caller's own namespace.
func TestNilNS(t *testing.T) {
	var ns *NS
	ran := false
	if err := ns.Do(func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("nil Do: %v, ran %v", err, ran)
	}
	if ns.Fd() != 0 || ns.Name() != "" || ns.Close() != nil || ns.String() != "the current network namespace" {
		t.Error("nil NS accessors")
	}
	ino, err := ns.Inode()
	if err != nil || uint64(ino) != threadNetNSInode(t) {
		t.Errorf("nil Inode = %d, %v", ino, err)
	}
	h, err := ns.RouteHandle()
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
}

// TestOpenInodeHeldByFD finds a namespace that only an open descriptor of
// this process holds (its name is gone).
func TestOpenInodeHeldByFD(t *testing.T) {
	needRoot(t)
	ns, err := Create(fmt.Sprintf("snt-t%d-held", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	ino, _ := ns.Inode()
	if err := Delete(ns.Name()); err != nil { // only ns's fd holds it now
		t.Fatal(err)
	}
	defer ns.Close()
	o, err := Open(fmt.Sprint(ino))
	if err != nil {
		t.Fatalf("Open(inode held by fd %d): %v", ns.Fd(), err)
	}
	defer o.Close()
	if got, _ := o.Inode(); got != ino {
		t.Errorf("opened inode %d, want %d", got, ino)
	}
}

// TestRouteHandleOpensRouteOnly: the handle of a namespace holds a
// NETLINK_ROUTE socket and nothing else. vishvananda's NewHandleAt without
// families also opens NETLINK_XFRM, which fails where xfrm_user cannot be
// loaded ("protocol not supported", a stock Debian 6.1 guest).
func TestRouteHandleOpensRouteOnly(t *testing.T) {
	needRoot(t)
	ns, err := Create(fmt.Sprintf("snt-t%d-route", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Delete()
	before := netlinkSockets(t, ns)
	h, err := ns.RouteHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	after := netlinkSockets(t, ns)
	for proto, n := range after {
		if d := n - before[proto]; d != 0 && proto != unix.NETLINK_ROUTE {
			t.Errorf("RouteHandle opened %d sockets of netlink protocol %d", d, proto)
		}
	}
	if after[unix.NETLINK_ROUTE]-before[unix.NETLINK_ROUTE] != 1 {
		t.Errorf("RouteHandle opened %d NETLINK_ROUTE sockets, want 1", after[unix.NETLINK_ROUTE]-before[unix.NETLINK_ROUTE])
	}
}

// netlinkSockets counts this process's netlink sockets in ns by protocol:
// the inodes of /proc/self/fd matched against ns's /proc/net/netlink.
func netlinkSockets(t *testing.T, ns *NS) map[int]int {
	t.Helper()
	fds, _ := os.ReadDir("/proc/self/fd")
	mine := map[string]bool{}
	for _, fd := range fds {
		if l, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(l, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var table []byte
	if err := ns.Do(func() (err error) { table, err = os.ReadFile("/proc/thread-self/net/netlink"); return err }); err != nil {
		t.Fatal(err)
	}
	out := map[int]int{}
	for _, line := range strings.Split(string(table), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 || !mine[f[len(f)-1]] {
			continue
		}
		proto, _ := strconv.Atoi(f[1])
		out[proto]++
	}
	return out
}

// TestCreateSharesDir: Create makes /run/netns a shared mount point, as
// `ip netns add` does first; otherwise a later `ip netns add` bind-mounts
// the directory over itself and hides the mounts made before, which can then
// be neither unmounted nor removed (EBUSY: a CI run left a namespace so).
func TestCreateSharesDir(t *testing.T) {
	needRoot(t)
	ns, err := Create(fmt.Sprintf("snt-t%d-shared", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Delete()
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range strings.Split(string(info), "\n") {
		f := strings.Fields(l)
		if len(f) > 6 && f[4] == Dir {
			found = true
			if !strings.Contains(l, " shared:") {
				t.Errorf("%s is a mount point but not shared: %s", Dir, l)
			}
		}
	}
	if !found {
		t.Errorf("%s is not a mount point after Create", Dir)
	}
}
