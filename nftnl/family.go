package nftnl

import "fmt"

// NFPROTO numbers of the nftables families (include/uapi/linux/netfilter.h).
const (
	familyInet   = 1
	familyIPv4   = 2
	familyARP    = 3
	familyNetdev = 5
	familyBridge = 7
	familyIPv6   = 10
)

var familyNames = map[byte]string{
	familyInet: "inet", familyIPv4: "ip", familyIPv6: "ip6",
	familyARP: "arp", familyNetdev: "netdev", familyBridge: "bridge",
}

var familyNumbers = func() map[string]byte {
	m := make(map[string]byte, len(familyNames))
	for n, s := range familyNames {
		m[s] = n
	}
	return m
}()

// FamilyName returns the nft name of an NFPROTO family number ("ip" for 2),
// or "" for an unknown one.
func FamilyName(n byte) string { return familyNames[n] }

// FamilyNumber returns the NFPROTO number of an nft family name.
func FamilyNumber(name string) (byte, bool) {
	n, ok := familyNumbers[name]
	return n, ok
}

// HookName names the netfilter hook number n of a base chain in family.
func HookName(family string, n uint32) string {
	if family == "netdev" {
		return [...]string{"ingress", "egress"}[n%2]
	}
	names := []string{"prerouting", "input", "forward", "output", "postrouting", "ingress"}
	if int(n) < len(names) {
		return names[n]
	}
	return fmt.Sprintf("hook%d", n)
}
