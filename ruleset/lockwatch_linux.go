//go:build linux

package ruleset

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// XtablesLockPath is the xtables lock file iptables takes:
// $XTABLES_LOCKFILE (iptables 1.8.6+), else /run/xtables.lock.
func XtablesLockPath() string {
	if p := os.Getenv("XTABLES_LOCKFILE"); p != "" {
		return p
	}
	return "/run/xtables.lock"
}

// WatchXtablesLock signals events (without blocking: one pending signal is
// enough) each time a process closes path, the xtables lock file that
// iptables writers take (inotify IN_CLOSE), until ctx ends. iptables-legacy
// sends no netlink events: a close of its lock is the only sign that it
// wrote. The lock is shared by every namespace of the mount namespace, so a
// signal is only a hint.
func WatchXtablesLock(ctx context.Context, path string, events chan<- struct{}) error {
	// iptables creates the lock file on first use; so does the watch, to
	// see the first writer too.
	if lf, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o600); err == nil {
		lf.Close()
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("watching %s: %w", path, err)
	}
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_CLOSE_WRITE|unix.IN_CLOSE_NOWRITE); err != nil {
		unix.Close(fd)
		return fmt.Errorf("watching %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), "inotify "+path)
	context.AfterFunc(ctx, func() { f.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := f.Read(buf); err != nil || ctx.Err() != nil {
				return
			}
			select {
			case events <- struct{}{}:
			default:
			}
		}
	}()
	return nil
}
