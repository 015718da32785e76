//go:build !linux

package netns

import "errors"

var errNotLinux = errors.New("network namespaces need Linux")

// Create is only available on Linux.
func Create(name string) (*NS, error) { return nil, errNotLinux }

// Open is only available on Linux.
func Open(spec string) (*NS, error) { return nil, errNotLinux }

// OpenSpec is only available on Linux.
func OpenSpec(s Spec) (*NS, error) { return nil, errNotLinux }

// Inode is only available on Linux.
func (n *NS) Inode() (uint32, error) { return 0, errNotLinux }

// Close does nothing: no NS can be opened off Linux.
func (n *NS) Close() error { return nil }

// Delete is only available on Linux.
func (n *NS) Delete() error { return errNotLinux }

// Delete is only available on Linux.
func Delete(name string) error { return errNotLinux }

// Do runs fn directly for the nil NS and is otherwise only available on Linux.
func (n *NS) Do(fn func() error) error {
	if n == nil {
		return fn()
	}
	return errNotLinux
}

// Enter is only available on Linux.
func (n *NS) Enter() error { return errNotLinux }

// StillOpens is only available on Linux.
func (n *NS) StillOpens(spec string) error { return errNotLinux }
