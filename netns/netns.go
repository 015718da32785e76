// Package netns is snatrace's one handle on a network namespace: it creates,
// opens, enters and deletes them, runs functions and tools inside them, and
// names them.
//
// A network namespace is a property of an OS thread, not of a goroutine, so
// every function here that changes namespace does it on a fresh goroutine
// locked to its own thread, never on the caller's. If restoring the original
// namespace fails, the thread stays locked and the Go runtime discards it
// when the goroutine ends, so a thread in the wrong namespace is never reused.
// A child process forked from such a thread starts in its namespace: that is
// how tools run inside one (package tool), without nsenter.
//
// Every --netns flag of snatrace takes the forms Open accepts: a name under
// /run/netns, a path, pid:PID, or the inode number that trace events and
// /proc/PID/ns/net links show. A nil *NS is the caller's own namespace: its
// Do runs the function directly, its Fd is 0 (what mdlayher/netlink and
// google/nftables read as "do not switch").
//
// Named namespaces are bind mounts under /run/netns, the same place iproute2
// uses, so `ip netns list` sees them and a crashed run can be cleaned by name.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Dir is where named network namespaces are bind-mounted (iproute2's location).
const Dir = "/run/netns"

// NS is an open network namespace. Its methods are safe for concurrent use,
// except Close (and Delete), which must come after every other use ends.
// The nil *NS is the caller's own namespace.
type NS struct {
	name string // "" when opened by path
	path string
	fd   int
}

// Name returns the namespace's name under Dir, or "" if it was opened by path.
func (n *NS) Name() string {
	if n == nil {
		return ""
	}
	return n.name
}

// Path returns the file that names the namespace ("" for the caller's own).
func (n *NS) Path() string {
	if n == nil {
		return ""
	}
	return n.path
}

// Fd returns a file descriptor of the namespace, valid until Close; it suits
// netlink.Config.NetNS and nftables.WithNetNSFd. It is 0 for the nil NS,
// which those libraries read as the calling thread's namespace.
func (n *NS) Fd() int {
	if n == nil {
		return 0
	}
	return n.fd
}

func (n *NS) String() string {
	switch {
	case n == nil:
		return "the current network namespace"
	case n.name != "":
		return n.name
	}
	return n.path
}

// ErrExists is returned by Create when the name is taken.
var ErrExists = errors.New("network namespace already exists")

// Spec is a parsed --netns value: exactly one field is set.
type Spec struct {
	Name  string // under Dir
	Path  string // any namespace file
	PID   int    // the namespace of a process
	Inode uint32 // the namespace with this nsfs inode
}

// ErrGone is StillOpens' error for a namespace that its spec no longer
// opens.
var ErrGone = errors.New("gone (deleted, or its process ended)")

// ParseSpec parses the forms every --netns flag accepts:
//
//	NAME           a namespace made by `ip netns add NAME` (a file under /run/netns)
//	PATH           any path with a '/': /proc/1234/ns/net, /var/run/docker/netns/abc
//	pid:PID        the namespace of process PID
//	INODE          the namespace with this inode number (as trace events print it)
//	net:[INODE]    the same, as readlink /proc/PID/ns/net prints it
func ParseSpec(s string) (Spec, error) {
	switch {
	case s == "" || s == "." || s == "..":
		return Spec{}, fmt.Errorf("network namespace %q: want NAME, PATH, pid:PID or an inode number", s)
	case strings.ContainsRune(s, '/'):
		return Spec{Path: s}, nil
	case strings.HasPrefix(s, "pid:"):
		pid, err := strconv.Atoi(s[4:])
		if err != nil || pid < 1 {
			return Spec{}, fmt.Errorf("network namespace %q: want pid:PID with a process id", s)
		}
		return Spec{PID: pid}, nil
	case strings.HasPrefix(s, "net:["):
		ino, err := strconv.ParseUint(strings.TrimSuffix(s[5:], "]"), 10, 32)
		if err != nil || !strings.HasSuffix(s, "]") || ino == 0 {
			return Spec{}, fmt.Errorf("network namespace %q: want net:[INODE]", s)
		}
		return Spec{Inode: uint32(ino)}, nil
	}
	if ino, err := strconv.ParseUint(s, 10, 32); err == nil && ino > 0 {
		return Spec{Inode: uint32(ino)}, nil
	}
	return Spec{Name: s}, nil
}

func (s Spec) String() string {
	switch {
	case s.Path != "":
		return s.Path
	case s.PID != 0:
		return "pid:" + strconv.Itoa(s.PID)
	case s.Inode != 0:
		return fmt.Sprintf("net:[%d]", s.Inode)
	}
	return s.Name
}

// List returns the names under Dir that start with prefix, sorted.
func List(prefix string) ([]string, error) {
	ents, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing network namespaces: %w", err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// validName reports whether name can live under Dir.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && filepath.Base(name) == name
}
