// Package xtables reads and changes iptables-legacy tables through the
// kernel's own interface, as libiptc does: a snapshot of a table's entries
// (IPT_SO_GET_ENTRIES), the chains and rules in it, each rule printed as
// iptables-legacy-save prints it for the matches and targets source-NAT
// chains hold, and one commit of the whole table with its counters carried
// over (IPT_SO_SET_REPLACE, IPT_SO_SET_ADD_COUNTERS).
//
// It exists for speed at scale: on a kube-proxy node of 100,000 rules,
// iptables-legacy-save prints the whole table (0.7 s) and
// iptables-legacy-restore reads and rewrites it (1.1 s), where a fix needs
// the few chains that hold MASQUERADE and SNAT rules and one flag set in
// them. Everything it cannot print exactly (Rule returns ErrUnsupported)
// is left to the iptables tools; the tests check every printed rule byte for
// byte against iptables-legacy-save and ip6tables-legacy-save. Both
// families (Family: ip_tables and ip6_tables, whose entries differ only in
// their IP part), in 64-bit processes (a 32-bit one gets the kernel's
// compat layout: Open refuses it).
package xtables
