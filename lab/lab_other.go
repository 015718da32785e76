//go:build !linux

package lab

import (
	"context"
	"errors"
)

var errNotLinux = errors.New("the lab needs Linux network namespaces and netfilter; use snatrace sim")

// Run is only available on Linux.
func Run(ctx context.Context, cfg Config) (*Report, error) { return nil, errNotLinux }

// CheckPrivileges is only available on Linux.
func CheckPrivileges() error { return errNotLinux }

// Cleanup is only available on Linux.
func Cleanup(prefix string) ([]string, error) { return nil, errNotLinux }
