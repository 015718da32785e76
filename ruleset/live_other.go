//go:build !linux

package ruleset

import (
	"context"
	"errors"
)

// Read reads the rules of a live network namespace; it needs Linux.
func Read(ctx context.Context, opts ReadOptions) (*Ruleset, error) {
	return nil, errors.New("reading live rules needs Linux")
}
