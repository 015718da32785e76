// Package ruleset reads the source-NAT rules of a host, a network namespace or
// a dump file into one model, and says which software installed each of them.
//
// Nodes mix backends: native nftables rules, iptables-nft rules (xtables
// targets stored inside nftables) and iptables-legacy rules that nftables
// cannot see at all. A Ruleset holds the MASQUERADE/SNAT rules of all of them
// side by side, each with the exact coordinates a later change needs: the
// nftables table, chain, handle and raw expressions, or the iptables table,
// chain, position and the original dump line.
//
// Dumps are parsed by ParseIptablesSave (iptables-save, both flavours, and
// iptables -S), ParseNftText (nft list ruleset) and ParseNftJSON
// (nft -j list ruleset); Parse detects the format. Read (Linux) reads a live
// namespace over netlink and through iptables-legacy-save. Attribute sets
// each rule's Owner from the signature table in owner.go.
package ruleset
