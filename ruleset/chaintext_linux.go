//go:build linux

package ruleset

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/nftnl"
)

// ChainText is the rules of one chain rendered as nft statements.
type ChainText struct {
	Chain Chain
	Rules []string
}

// ReadChainText reads the rules of the given nftables chains of opts.NS
// over netlink, one chain per request, and renders each rule as nft
// statement text ("ip daddr 10.96.0.10 udp dport 53 goto service-…",
// "meta l4proto udp dnat to 10.244.0.5:53", "notrack"), for a scan that
// looks for words in rules (the DNS path). It never runs nft: `nft list
// chain` reads every set of the table first, seconds on a kube-proxy table
// with 10,000 anonymous maps. Expressions it cannot name show as their
// type.
func ReadChainText(ctx context.Context, opts ReadOptions, chains []Chain) ([]ChainText, error) {
	c, err := nftnl.Dial(append([]nftnl.Option{nftnl.WithNetNS(opts.NS)}, opts.Nftables...)...)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	out := make([]ChainText, 0, len(chains))
	for _, ch := range chains {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ct := ChainText{Chain: ch}
		_, err := c.DumpEach(unix.NFT_MSG_GETRULE, nftFamily(ch.Family), []netlink.Attribute{
			{Type: unix.NFTA_RULE_TABLE, Data: append([]byte(ch.Table), 0)},
			{Type: unix.NFTA_RULE_CHAIN, Data: append([]byte(ch.Name), 0)},
		}, func(m netlink.Message) error {
			line, err := ruleText(m.Data)
			if err != nil {
				return err
			}
			ct.Rules = append(ct.Rules, line)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("listing the rules of %s %s %s: %w", ch.Family, ch.Table, ch.Name, err)
		}
		out = append(out, ct)
	}
	return out, nil
}

// ruleText decodes one NFT_MSG_NEWRULE message and renders it.
func ruleText(data []byte) (string, error) {
	if len(data) < 4 {
		return "", nil
	}
	r, exprs, udata, err := ruleAttrs(data, interner{})
	if err != nil {
		return "", err
	}
	nr, _, err := decodeRule(data[0], &r, bytes.Clone(exprs), bytes.Clone(udata))
	if err != nil {
		return "", err
	}
	d := describeExprs(r.family, nr.Exprs, nr.UserData)
	return strings.TrimSpace(strings.Join(append(append(d.match, d.stmts...), d.natText), " ")), nil
}
