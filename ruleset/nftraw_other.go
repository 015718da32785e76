//go:build !linux

package ruleset

// NftRaw is the kernel's view of a rule read over netlink; empty off Linux.
type NftRaw struct{}
