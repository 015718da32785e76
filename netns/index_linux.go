//go:build linux

package netns

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultMinScan is how often, at most, an Index rescans /proc.
const DefaultMinScan = time.Second

// Index opens network namespaces by inode without a scan of /proc per
// lookup: it keeps the inode → path map of its last scan and rescans only
// when an inode is missing, at most once per MinScan. Under pod churn, a
// burst of lookups for new namespaces costs one scan, not one each. Its
// methods are safe for concurrent use.
type Index struct {
	// MinScan is the least time between two scans; 0 means DefaultMinScan.
	MinScan time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu      sync.Mutex
	paths   map[uint32]string
	scanned time.Time
	scans   int
	scan    func() map[uint32]string // nil: scanPaths
}

// Open opens the namespace with inode, as OpenSpec(Spec{Inode: inode}) does,
// from the last scan's paths, or from a fresh scan if the last one is older
// than MinScan. An inode not found wraps os.ErrNotExist.
func (x *Index) Open(inode uint32) (*NS, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	label := Spec{Inode: inode}.String()
	if p, ok := x.paths[inode]; ok {
		if ns, err := openPath("", p, label); err == nil && sameInode(ns, inode) {
			return ns, nil
		} else if err == nil {
			ns.Close()
		}
		delete(x.paths, inode) // its process exited, or the pid was reused
	}
	if !x.rescan() {
		return nil, fmt.Errorf("opening network namespace %s: not in the last scan of /proc (rescanned at most every %v): %w", label, x.minScan(), os.ErrNotExist)
	}
	p, ok := x.paths[inode]
	if !ok {
		return nil, fmt.Errorf("opening network namespace %s: no process or name holds it: %w", label, os.ErrNotExist)
	}
	return openPath("", p, label)
}

// Scans returns how many times the index has scanned /proc.
func (x *Index) Scans() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.scans
}

// rescan scans if the last scan is old enough, and reports whether it did.
func (x *Index) rescan() bool {
	now := time.Now
	if x.Now != nil {
		now = x.Now
	}
	t := now()
	if x.scans > 0 && t.Sub(x.scanned) < x.minScan() {
		return false
	}
	scan := x.scan
	if scan == nil {
		scan = scanPaths
	}
	x.paths, x.scanned = scan(), t
	x.scans++
	return true
}

func (x *Index) minScan() time.Duration {
	if x.MinScan > 0 {
		return x.MinScan
	}
	return DefaultMinScan
}

func sameInode(ns *NS, inode uint32) bool {
	got, err := ns.Inode()
	return err == nil && got == inode
}

// nsPatterns are where network namespace files are looked for, in order:
// this process's own, its open files and threads, the names under Dir, and
// every process's.
var nsPatterns = []string{"/proc/self/ns/net", "/proc/self/fd/*", "/proc/self/task/*/ns/net", Dir + "/*", "/proc/[0-9]*/ns/net"}

// scanPaths maps the inode of every network namespace it can see to a path
// that opens it (the first found in nsPatterns' order).
func scanPaths() map[uint32]string {
	paths := make(map[uint32]string)
	walkNamespaces(func(p string, inode uint32) bool {
		if _, ok := paths[inode]; !ok {
			paths[inode] = p
		}
		return true
	})
	return paths
}

// walkNamespaces calls fn for each namespace file in nsPatterns' order until
// fn returns false. Namespace files live on nsfs: devices are compared too,
// so a regular file with the same inode number is never reported.
func walkNamespaces(fn func(path string, inode uint32) bool) {
	var self unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &self); err != nil {
		return
	}
	for _, pattern := range nsPatterns {
		m, _ := filepath.Glob(pattern)
		for _, p := range m {
			var st unix.Stat_t
			if err := unix.Stat(p, &st); err == nil && st.Dev == self.Dev {
				if !fn(p, uint32(st.Ino)) {
					return
				}
			}
		}
	}
}
