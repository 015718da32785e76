//go:build !linux

package netns

import "errors"

var errNotLinux = errors.New("network namespaces need Linux")

// Create is only available on Linux.
func Create(name string) (*NS, error) { return nil, errNotLinux }

// Open is only available on Linux.
func Open(nameOrPath string) (*NS, error) { return nil, errNotLinux }

// Close is only available on Linux.
func (n *NS) Close() error { return errNotLinux }

// Delete is only available on Linux.
func (n *NS) Delete() error { return errNotLinux }

// Delete is only available on Linux.
func Delete(name string) error { return errNotLinux }

// Do is only available on Linux.
func (n *NS) Do(fn func() error) error { return errNotLinux }

// Enter is only available on Linux.
func (n *NS) Enter() error { return errNotLinux }
