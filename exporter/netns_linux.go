//go:build linux

package exporter

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/snatrace/snatrace/ctstat"
	"golang.org/x/sys/unix"
)

// NetNS is an open network namespace to watch.
type NetNS struct {
	f    *os.File
	Path string
}

// OpenNetNS opens a namespace by name (a file under /run/netns, as made by
// ip netns add) or by path (/proc/PID/ns/net, a bind mount).
func OpenNetNS(spec string) (*NetNS, error) {
	path := spec
	if !strings.Contains(spec, "/") {
		if spec == "" || spec == "." || spec == ".." {
			return nil, fmt.Errorf("opening network namespace %q: not a name", spec)
		}
		path = filepath.Join("/run/netns", spec)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("checking network namespace %s: %w", path, err)
	}
	if st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
		f.Close()
		return nil, fmt.Errorf("opening network namespace %s: not a namespace file", path)
	}
	return &NetNS{f: f, Path: path}, nil
}

// Close closes the namespace file.
func (n *NetNS) Close() error { return n.f.Close() }

// FD is the namespace's file descriptor.
func (n *NetNS) FD() int { return int(n.f.Fd()) }

// Option returns the conntrack readers of the namespace: ctnetlink with a
// socket opened inside it, /proc and nf_conntrack_max read from an OS thread
// that enters it for the read.
func (n *NetNS) Option() Option {
	return WithConntrack(
		func() (ctstat.Snapshot, error) { return ctstat.ReadNetlink(n.FD()) },
		func() (s ctstat.Snapshot, err error) {
			err = n.do(func() error { s, err = ctstat.ReadProc(ctstat.ProcPath); return err })
			return s, err
		},
		func() (v uint64, err error) {
			err = n.do(func() error { v, err = ctstat.ReadMax(""); return err })
			return v, err
		},
	)
}

// do runs fn on a locked OS thread inside the namespace. If the thread cannot
// go back to its namespace it stays locked and the runtime discards it.
func (n *NetNS) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening the thread's network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(n.FD(), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering network namespace %s: %w", n.Path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("leaving network namespace %s: %w", n.Path, err) // thread stays locked
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
