//go:build linux

package ruleset

import "github.com/google/nftables"

// NftRaw is the kernel's view of a rule read over netlink: its table, chain,
// handle, expressions and user data, ready for a replace-by-handle.
type NftRaw struct {
	Rule *nftables.Rule
}
