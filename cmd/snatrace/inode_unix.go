//go:build unix

package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// netnsInode resolves --netns: "" (all namespaces), an inode number, or a
// namespace file whose inode is taken.
func netnsInode(s string) (uint32, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	fi, err := os.Stat(s)
	if err != nil {
		return 0, fmt.Errorf("want an inode number or a namespace file: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("reading the inode of %s: unsupported platform", s)
	}
	return uint32(st.Ino), nil
}
