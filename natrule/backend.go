package natrule

import (
	"fmt"
	"strings"
)

// Backend names the userspace that writes a rule and the way it reaches the
// kernel; a fix goes back through the same one. Its string is the id JSON
// documents and metric labels carry.
type Backend string

const (
	// Nftables is a native nftables rule (nft, knftables, netlink).
	Nftables Backend = "nftables"
	// IptablesNFT is an iptables rule stored in nftables by iptables-nft:
	// xt targets inside nftables.
	IptablesNFT Backend = "iptables-nft"
	// IptablesLegacy is a rule in the legacy x_tables kernel tables,
	// invisible to nftables.
	IptablesLegacy Backend = "iptables-legacy"
	// Iptables is an iptables rule from a dump that does not say its
	// flavour (iptables -S output).
	Iptables Backend = "iptables"
)

// Backends lists the backends Install can write through, default first.
var Backends = []Backend{Nftables, IptablesNFT, IptablesLegacy}

// ParseBackend reads a backend as a flag gives it: "nft" (or "nftables"),
// "iptables-nft" or "iptables-legacy".
func ParseBackend(s string) (Backend, error) {
	switch s {
	case "nft", "nftables":
		return Nftables, nil
	case string(IptablesNFT), string(IptablesLegacy):
		return Backend(s), nil
	}
	return "", fmt.Errorf("unknown backend %q: want nft, iptables-nft or iptables-legacy", s)
}

// Flag returns the word --backend takes for b ("nft" for Nftables), which
// the lab's report also uses.
func (b Backend) Flag() string {
	if b == Nftables {
		return "nft"
	}
	return string(b)
}

// IsIptables reports whether rules of b are written in iptables syntax.
func (b Backend) IsIptables() bool {
	return b == IptablesNFT || b == IptablesLegacy || b == Iptables
}

// Family is the nftables address family of a table: "ip", "ip6", "inet",
// "bridge", "arp" or "netdev". iptables rules are "ip" and ip6tables rules
// "ip6".
type Family string

// The families NAT rules live in.
const (
	IPv4 Family = "ip"
	IPv6 Family = "ip6"
	Inet Family = "inet"
)

// Tools returns the save and restore tools of an iptables backend for a
// family: iptables-legacy-save and iptables-legacy-restore, ip6tables-nft-save
// and so on. ok is false for a backend that has none (Nftables, Iptables).
func Tools(b Backend, fam Family) (save, restore string, ok bool) {
	var flavour string
	switch b {
	case IptablesLegacy:
		flavour = "-legacy"
	case IptablesNFT:
		flavour = "-nft"
	default:
		return "", "", false
	}
	p := toolPrefix(fam)
	return p + flavour + "-save", p + flavour + "-restore", true
}

// Tool returns the iptables command of backend b for fam ("iptables-nft",
// "ip6tables-legacy"); ok is false for nftables.
func Tool(b Backend, fam Family) (string, bool) {
	save, _, ok := Tools(b, fam)
	return strings.TrimSuffix(save, "-save"), ok
}

// PlainTools returns the unflavoured iptables-save and iptables-restore of a
// family: before iptables 1.8 they are the only names, and the legacy
// flavour (IsNFTFlavour tells the two apart by their --version).
func PlainTools(fam Family) (save, restore string) {
	p := toolPrefix(fam)
	return p + "-save", p + "-restore"
}

// IsNFTFlavour reports whether an iptables tool's --version output says it
// is the nf_tables flavour ("iptables v1.8.9 (nf_tables)").
func IsNFTFlavour(version string) bool { return strings.Contains(version, "nf_tables") }

func toolPrefix(fam Family) string {
	if fam == IPv6 {
		return "ip6tables"
	}
	return "iptables"
}

// Binaries returns the userspace tools Install needs to install rules
// through b: none for nftables over netlink, nft for what google/nftables
// cannot express (masquerade with ports), the backend's restore tool for
// iptables.
func Binaries(b Backend, rules []Rule) []string {
	if b == Nftables {
		if needsNFTText(rules) {
			return []string{"nft"}
		}
		return nil
	}
	if _, restore, ok := Tools(b, IPv4); ok {
		return []string{restore}
	}
	return nil
}

// needsNFTText reports whether a rule needs what google/nftables cannot
// marshal: masquerade with a port range. google/nftables (v0.3.0) sends the
// port registers of such a masq expression but no flags at all, neither
// random/fully-random/persistent nor NF_NAT_RANGE_PROTO_SPECIFIED, and
// nft_masq does not add PROTO_SPECIFIED itself: the kernel would ignore the
// port range while `nft list ruleset` still prints it.
func needsNFTText(rules []Rule) bool {
	for _, r := range rules {
		if r.Mode.Action == Masquerade && r.Mode.HasPorts() {
			return true
		}
	}
	return false
}
