//go:build !linux

package ruleset

// NftRaw is the kernel's view of a rule read over netlink; empty off Linux,
// where rules come only from dumps.
type NftRaw struct{}
