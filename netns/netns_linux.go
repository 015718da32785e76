//go:build linux

package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// Create makes a new network namespace named name under Dir and returns it
// open. The caller's thread is left in its namespace. It fails with ErrExists
// if the name is taken.
func Create(name string) (*NS, error) {
	if name == "" || filepath.Base(name) != name {
		return nil, fmt.Errorf("creating network namespace %q: invalid name", name)
	}
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", Dir, err)
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

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Unshare moves this thread only; the bind mount keeps the namespace
		// alive after the thread goes back (or dies).
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("opening current namespace: %w", err)
			return // thread stays locked and is discarded
		}
		defer unix.Close(orig)
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			return
		}
		mountErr := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, "")
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(mountErr, fmt.Errorf("returning to the original namespace: %w", err))
			return // thread stays locked and is discarded
		}
		runtime.UnlockOSThread()
		if mountErr != nil {
			mountErr = fmt.Errorf("bind-mounting namespace at %s: %w", path, mountErr)
		}
		errc <- mountErr
	}()
	if err := <-errc; err != nil {
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

// Open opens an existing namespace by name (under Dir) or by path (any file
// that names a network namespace, e.g. /proc/PID/ns/net).
func Open(nameOrPath string) (*NS, error) {
	name, path := pathOf(nameOrPath)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", nameOrPath, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil || (st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC) {
		unix.Close(fd)
		return nil, fmt.Errorf("opening network namespace %s: not a namespace file", nameOrPath)
	}
	return &NS{name: name, path: path, fd: fd}, nil
}

// Close releases the namespace's file descriptor. The namespace itself lives
// on while it is named or used.
func (n *NS) Close() error {
	if n.fd < 0 {
		return nil
	}
	err := unix.Close(n.fd)
	n.fd = -1
	return err
}

// Delete closes n and, if it is named, removes its name. The kernel frees the
// namespace, its links and rules once no process or socket uses it.
func (n *NS) Delete() error {
	n.Close()
	if n.name == "" {
		return nil
	}
	return Delete(n.name)
}

// Delete removes the named namespace name from Dir. Deleting a name that does
// not exist is not an error.
func Delete(name string) error {
	path := filepath.Join(Dir, name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

// Do runs fn on a dedicated OS thread inside n and returns its error. fn must
// not start goroutines that expect to be in n: only its own thread is.
// Sockets created by fn stay in n after Do returns and may be used from any
// goroutine.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("opening current namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering network namespace %s: %w", n, err)
			return
		}
		var ferr error
		func() {
			defer func() {
				if r := recover(); r != nil {
					ferr = fmt.Errorf("panic in network namespace %s: %v", n, r)
				}
			}()
			ferr = fn()
		}()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime ends it with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("leaving network namespace %s: %w", n, err))
			return
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
	if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("entering network namespace %s: %w", n, err)
	}
	return nil
}
