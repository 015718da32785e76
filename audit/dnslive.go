package audit

import (
	"context"
	"fmt"
	"strings"

	"github.com/snatrace/snatrace/netns"

	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/ruleset"
	"github.com/snatrace/snatrace/tool"
)

// maxDNSChains bounds the chains a live scan lists one by one.
const maxDNSChains = 64

// ScanDNSLive scans, for the DNS path, only the chains of namespace ns that
// can hold it, read one by one (tools run through r, inside ns): a
// whole-ruleset dump (nft list ruleset, iptables-nft-save) takes seconds on
// a kube-proxy node of 100,000 rules, and so does nft list chain on a table
// with 10,000 anonymous maps. Those chains are, in the chain list rs read:
//
//   - nftables: base chains at prerouting or output of type nat or of raw
//     priority (conntrack's and NOTRACK's place), and chains whose name says
//     DNS (kube-proxy's service-…/kube-dns/… and endpoint-… chains), read
//     over netlink and rendered as nft statements (ruleset.ReadChainText);
//   - iptables-nft: nat PREROUTING, OUTPUT and KUBE-SERVICES, raw PREROUTING
//     and OUTPUT (iptables-nft -t TABLE -S CHAIN);
//   - iptables-legacy: nat and raw of each family (ruleset.LegacyTexts):
//     the nat table the rule read already read through the kernel
//     interface, printed (only the lines ScanDNS would look at,
//     dnsCandidate); raw through iptables-legacy-save -t raw
//     (ip6tables-legacy-save); or every table from the save the rule read
//     ran (rs.TakeDumps).
//
// A tool that is missing is skipped; one that fails is a warning.
func ScanDNSLive(ctx context.Context, ns *netns.NS, r tool.Runner, rs *ruleset.Ruleset) (*DNSPath, []string) {
	p := &DNSPath{}
	var warnings []string
	texts, err := ruleset.ReadChainText(ctx, ruleset.ReadOptions{NS: ns}, dnsNftChains(rs))
	if err != nil {
		warnings = append(warnings, fmt.Sprintf("DNS path: nftables: %v", err))
	}
	for _, ct := range texts {
		c := ct.Chain
		ScanDNS(p, fmt.Sprintf("netlink %s %s %s", c.Family, c.Table, c.Name), strings.Join(ct.Rules, "\n"))
	}
	for _, d := range rs.TakeDumps() {
		texts, err := ruleset.LegacyTexts(ctx, ns, r, d, dnsCandidate, "nat", "raw")
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("DNS path: iptables-legacy: %v", err))
		}
		for _, t := range texts {
			ScanDNS(p, t.Tool, t.Text)
		}
	}
	for _, c := range dnsCommands(rs) {
		if _, err := r.LookPath(c.Name); err != nil {
			continue
		}
		out, err := r.Run(ctx, c)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("DNS path: %s: %v", c, err))
			continue
		}
		ScanDNS(p, c.String(), string(out))
	}
	if len(p.Scanned) == 0 {
		return nil, warnings
	}
	return p, warnings
}

// dnsNftChains lists the native nftables chains ScanDNSLive reads.
func dnsNftChains(rs *ruleset.Ruleset) []ruleset.Chain {
	var out []ruleset.Chain
	for _, c := range rs.Chains {
		if c.Backend == natrule.Nftables && dnsNftChain(c) && len(out) < maxDNSChains {
			out = append(out, c)
		}
	}
	return out
}

// dnsCommands lists the iptables-nft chains ScanDNSLive reads with
// iptables-nft.
func dnsCommands(rs *ruleset.Ruleset) []tool.Cmd {
	var cmds []tool.Cmd
	for _, c := range rs.Chains {
		if c.Backend == natrule.IptablesNFT && dnsIptChain(c) {
			bin, _ := natrule.Tool(natrule.IptablesNFT, c.Family)
			cmds = append(cmds, tool.Command(bin, "-t", c.Table, "-S", c.Name))
		}
	}
	return cmds
}

// dnsNftChain reports whether a native nftables chain can hold the DNS
// path: a prerouting or output base chain of type nat or at raw priority
// (-300, NOTRACK's), or a chain named for DNS.
func dnsNftChain(c ruleset.Chain) bool {
	if c.Hook == "prerouting" || c.Hook == "output" {
		return c.Type == "nat" || c.Priority <= -200
	}
	return strings.Contains(c.Name, "dns")
}

// dnsIptChain reports whether an iptables-nft chain can hold the DNS path.
func dnsIptChain(c ruleset.Chain) bool {
	switch c.Table {
	case "nat":
		return c.Name == "PREROUTING" || c.Name == "OUTPUT" || c.Name == "KUBE-SERVICES"
	case "raw":
		return c.Name == "PREROUTING" || c.Name == "OUTPUT"
	}
	return false
}
