// Package netns creates, enters and deletes named network namespaces safely.
//
// A network namespace is a property of an OS thread, not of a goroutine, so
// every function here that changes namespace does it on a fresh goroutine locked
// to its own thread, never on the caller's. If restoring the original namespace
// fails, the thread stays locked and the Go runtime discards it when the
// goroutine ends, so a thread in the wrong namespace is never reused.
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
	"strings"
)

// Dir is where named network namespaces are bind-mounted (iproute2's location).
const Dir = "/run/netns"

// NS is an open network namespace. Its methods are safe for concurrent use.
type NS struct {
	name string // "" when opened by path
	path string
	fd   int
}

// Name returns the namespace's name under Dir, or "" if it was opened by path.
func (n *NS) Name() string { return n.name }

// Path returns the file that names the namespace.
func (n *NS) Path() string { return n.path }

// Fd returns a file descriptor of the namespace, valid until Close; it suits
// netlink.NewHandleAt, nftables.WithNetNSFd and netlink.Config.NetNS.
func (n *NS) Fd() int { return n.fd }

func (n *NS) String() string {
	if n.name != "" {
		return n.name
	}
	return n.path
}

// ErrExists is returned by Create when the name is taken.
var ErrExists = errors.New("network namespace already exists")

// pathOf resolves a namespace given by name (under Dir) or by path.
func pathOf(nameOrPath string) (name, path string) {
	if strings.ContainsRune(nameOrPath, '/') {
		return "", nameOrPath
	}
	return nameOrPath, filepath.Join(Dir, nameOrPath)
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
