//go:build !linux

package ruleset

import (
	"context"
	"errors"

	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/tool"
)

// Read reads the rules of a live network namespace; it needs Linux.
func Read(ctx context.Context, opts ReadOptions) (*Ruleset, error) {
	return nil, errors.New("reading live rules needs Linux")
}

// ChainText is the rules of one chain rendered as nft statements.
type ChainText struct {
	Chain Chain
	Rules []string
}

// ReadChainText reads chains of a live network namespace; it needs Linux.
func ReadChainText(ctx context.Context, opts ReadOptions, chains []Chain) ([]ChainText, error) {
	return nil, errors.New("reading live rules needs Linux")
}

// LegacyTexts returns d: only Linux reads tables through the kernel
// interface.
func LegacyTexts(ctx context.Context, ns *netns.NS, run tool.Runner, d Dump, keep func(line string) bool, tables ...string) ([]Dump, error) {
	return []Dump{d}, nil
}
