//go:build linux

package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Create makes a new network namespace named name under Dir and returns it
// open. The caller's thread is left in its namespace. It fails with ErrExists
// if the name is taken.
func Create(name string) (*NS, error) {
	if !validName(name) {
		return nil, fmt.Errorf("creating network namespace %q: invalid name", name)
	}
	if err := sharedDir(); err != nil {
		return nil, fmt.Errorf("creating network namespace %s: %w", name, err)
	}
	path := filepath.Join(Dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("creating network namespace %s: %w", name, ErrExists)
	}
	if err != nil {
		return nil, fmt.Errorf("creating network namespace %s: %w", name, err)
	}
	f.Close()
	if err := onThread(func() error { return unshareAndMount(path) }); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("creating network namespace %s: %w", name, err)
	}
	ns, err := Open(name)
	if err != nil {
		Delete(name)
		return nil, err
	}
	return ns, nil
}

// sharedDir makes Dir a shared mount point, as `ip netns add` does before
// its first mount. Without it, an `ip netns add` that runs later turns Dir
// into a bind mount of itself and hides the namespace mounts made before,
// which can then be neither unmounted nor removed (EBUSY).
func sharedDir() error {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", Dir, err)
	}
	err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("making %s a shared mount: %w", Dir, err)
	}
	// Not a mount point yet: make it one, then shared.
	if err := unix.Mount(Dir, Dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mounting %s on itself: %w", Dir, err)
	}
	if err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("making %s a shared mount: %w", Dir, err)
	}
	return nil
}

// unshareAndMount moves the calling (locked) thread into a new namespace and
// bind-mounts it at path; the mount keeps the namespace alive after the
// thread goes back.
func unshareAndMount(path string) error {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
	}
	if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mounting namespace at %s: %w", path, err)
	}
	return nil
}

// Open opens a namespace given in any form ParseSpec accepts.
func Open(spec string) (*NS, error) {
	s, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	return OpenSpec(s)
}

// OpenSpec opens the namespace s names. A namespace given by inode is looked
// for among this process's own namespaces and threads, the names under Dir,
// and every process's.
func OpenSpec(s Spec) (*NS, error) {
	switch {
	case s.Name != "":
		if !validName(s.Name) {
			return nil, fmt.Errorf("opening network namespace %q: invalid name", s.Name)
		}
		return openPath(s.Name, filepath.Join(Dir, s.Name), s.String())
	case s.Path != "":
		return openPath("", s.Path, s.String())
	case s.PID != 0:
		return openPath("", fmt.Sprintf("/proc/%d/ns/net", s.PID), s.String())
	case s.Inode != 0:
		p, err := findInode(s.Inode)
		if err != nil {
			return nil, fmt.Errorf("opening network namespace %s: %w", s, err)
		}
		return openPath("", p, s.String())
	}
	return nil, errors.New("opening network namespace: empty spec")
}

func openPath(name, path, label string) (*NS, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", label, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil || (st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC) {
		unix.Close(fd)
		return nil, fmt.Errorf("opening network namespace %s: not a namespace file", label)
	}
	// A namespace file of another type (/proc/PID/ns/mnt) is refused;
	// kernels before 4.11 cannot tell (ENOTTY) and are trusted.
	if t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE); err == nil && t != unix.CLONE_NEWNET {
		unix.Close(fd)
		return nil, fmt.Errorf("opening network namespace %s: not a network namespace", label)
	}
	return &NS{name: name, path: path, fd: fd}, nil
}

// findInode returns a path that opens the network namespace with inode.
func findInode(inode uint32) (string, error) {
	var found string
	walkNamespaces(func(p string, ino uint32) bool {
		if ino == inode {
			found = p
		}
		return found == ""
	})
	if found == "" {
		return "", fmt.Errorf("no process or name holds it: %w", os.ErrNotExist)
	}
	return found, nil
}

// Inode returns the namespace's inode number, the identity trace events and
// /proc/PID/ns/net links show. For the nil NS it is the calling thread's.
func (n *NS) Inode() (uint32, error) {
	var st unix.Stat_t
	if n == nil {
		if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
			return 0, fmt.Errorf("reading the inode of the current network namespace: %w", err)
		}
		return uint32(st.Ino), nil
	}
	if err := unix.Fstat(n.fd, &st); err != nil {
		return 0, fmt.Errorf("reading the inode of %s: %w", n, err)
	}
	return uint32(st.Ino), nil
}

// RouteHandle returns a vishvananda/netlink handle for links, addresses and
// routes inside n. It opens NETLINK_ROUTE only: a handle with every family
// would also open NETLINK_XFRM, which fails ("protocol not supported") on
// kernels where xfrm_user is not loaded and cannot be.
func (n *NS) RouteHandle() (*netlink.Handle, error) {
	var (
		h   *netlink.Handle
		err error
	)
	if n == nil {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandleAt(vnetns.NsHandle(n.fd), unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("opening rtnetlink in %s: %w", n, err)
	}
	return h, nil
}

// Close releases the namespace's file descriptor. The namespace itself lives
// on while it is named or used.
func (n *NS) Close() error {
	if n == nil || n.fd < 0 {
		return nil
	}
	err := unix.Close(n.fd)
	n.fd = -1
	return err
}

// Delete closes n and, if it is named, removes its name. The kernel frees the
// namespace, its links and rules once no process or socket uses it.
func (n *NS) Delete() error {
	if n == nil {
		return errors.New("deleting the current network namespace: refused")
	}
	n.Close()
	if n.name == "" {
		return nil
	}
	return Delete(n.name)
}

// Delete removes the named namespace name from Dir. Deleting a name that does
// not exist is not an error.
func Delete(name string) error {
	if !validName(name) {
		return fmt.Errorf("deleting network namespace %q: invalid name", name)
	}
	path := filepath.Join(Dir, name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

// Do runs fn on a dedicated OS thread inside n and returns its error; for the
// nil NS it runs fn on the caller's goroutine. fn must not start goroutines
// that expect to be in n: only its own thread is. Sockets created by fn stay
// in n after Do returns and may be used from any goroutine; processes forked
// by fn (os/exec) start in n.
func (n *NS) Do(fn func() error) error {
	if n == nil {
		return fn()
	}
	return onThread(func() error {
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("entering network namespace %s: %w", n, err)
		}
		return fn()
	})
}

// onThread runs fn on a fresh goroutine locked to its OS thread, and puts the
// thread back in its network namespace afterwards. A panic in fn becomes an
// error. If the thread cannot go back, it stays locked and dies with the
// goroutine.
func onThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("opening current namespace: %w", err)
			return // thread stays locked and is discarded
		}
		defer unix.Close(orig)
		var ferr error
		func() {
			defer func() {
				if r := recover(); r != nil {
					ferr = fmt.Errorf("panic in a network namespace thread: %v", r)
				}
			}()
			ferr = fn()
		}()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("returning to the original network namespace: %w", err))
			return // thread stays locked and is discarded
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Enter moves the calling goroutine's thread into n for good: it locks the
// goroutine to its thread and never unlocks it, so the runtime discards the
// thread when the goroutine ends. Use it for long-lived workers that must stay
// in a namespace (a pod's client loop); call it first thing in the goroutine.
func (n *NS) Enter() error {
	runtime.LockOSThread()
	if n == nil {
		return nil
	}
	if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("entering network namespace %s: %w", n, err)
	}
	return nil
}

// StillOpens returns an error wrapping ErrGone when spec (as Open takes
// it) no longer opens the namespace n: its name or process is gone, or the
// name opens another namespace now. A watcher holding n keeps the
// namespace alive, and would go on reading one that nothing else uses.
// Other errors (the check itself failed) do not wrap ErrGone.
func (n *NS) StillOpens(spec string) error {
	want, err := n.Inode()
	if err != nil {
		return err
	}
	now, err := Open(spec)
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("network namespace %s: %w", spec, ErrGone)
	}
	if err != nil {
		return err
	}
	defer now.Close()
	got, err := now.Inode()
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("network namespace %s opens another namespace now (inode %d, was %d): %w", spec, got, want, ErrGone)
	}
	return nil
}
