//go:build !unix

package main

import "errors"

// netnsInode needs a Unix inode; elsewhere there are no network namespaces.
func netnsInode(s string) (uint32, error) {
	if s == "" {
		return 0, nil
	}
	return 0, errors.New("network namespaces need Linux")
}
