// Package nftnl speaks nftables netlink where google/nftables does not
// suffice: raw rule dumps read in one consistent generation, byte-exact
// replacement batches guarded by the ruleset generation, anonymous set
// copies, and the ruleset monitor. It is the one place in snatrace that
// builds nftables netlink messages by hand; ruleset's reader, fix's replace
// batch and fix's watch all go through it.
//
// A Conn is dialled inside a network namespace (WithNetNS) or against a test
// function (WithTestDial, an nltest.Func), so that everything built on it is
// tested byte for byte without root, the way google/nftables tests its
// expressions.
package nftnl
