// Package fix makes the source-NAT rules that audit flags fully-random, in
// place, atomically, and keeps them so.
//
// A fix is a Plan first: the rules audit says can race (plain or random-only
// masquerade/snat), narrowed by a Scope (owners, chains, exclusions), each
// with the exact before and after text. Nothing changes until Apply:
//
//   - nftables rules, native and iptables-nft alike, are replaced by handle in
//     one netlink batch that carries the plan's ruleset generation
//     (NFNL_BATCH_GENID): the kernel refuses the whole batch with ERESTART if
//     anything changed since the plan, so a stale plan is never applied. Each
//     replacement sends the rule's own attributes back byte for byte, with
//     only the NAT flags word changed (NFTA_MASQ_FLAGS, NFTA_NAT_FLAGS, or the
//     flags inside an xt MASQUERADE/SNAT target's info), counters included;
//   - iptables-legacy rules (and iptables-nft ones with MethodRestore) go
//     through iptables-restore --noflush -w with "-R CHAIN N", after checking
//     a checksum of each chain against the plan's, under the xtables lock.
//
// A rule that looks up an anonymous set gets a copy of the set in the same
// batch, since the kernel binds an anonymous set to a single rule.
//
// Before a change the affected rules are written to a Backup; Rollback puts
// exactly those rules back. Watch re-applies when an owner rewrites its rules:
// it listens to nftables netlink events, to iptables writers releasing the
// xtables lock, and re-reads periodically.
package fix
