//go:build linux

package ruleset

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// NftRaw is the kernel's view of a rule read over netlink: its table, chain,
// handle, expressions and user data, ready for a replace-by-handle.
type NftRaw struct {
	// Rule has Table (name, family), Chain (name), Handle, Exprs and UserData
	// as the kernel returned them.
	Rule *nftables.Rule
	// Complete is false when an expression of the rule has no Go type in
	// google/nftables and is missing from Rule.Exprs: such a rule must not be
	// written back.
	Complete bool
}

// nftDump is one consistent read of the nftables ruleset of a namespace.
type nftDump struct {
	gen    uint32
	chains []Chain
	rules  []dumpRule
}

// readNftDump dumps chains and rules in one request each, and retries when
// the ruleset generation moves during the read. nsFD 0 means the caller's
// namespace.
func readNftDump(nsFD int) (*nftDump, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: nsFD})
	if err != nil {
		return nil, fmt.Errorf("opening nftables netlink socket: %w", err)
	}
	defer c.Close()
	// A dump of even a huge ruleset takes well under a second; never hang.
	if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return nil, fmt.Errorf("setting a netlink deadline: %w", err)
	}
	for attempt := 0; attempt < 5; attempt++ {
		gen, err := nftGen(c)
		if err != nil {
			return nil, err
		}
		d := &nftDump{gen: gen}
		if err := d.readChains(c); err != nil {
			return nil, err
		}
		if err := d.readRules(c); err != nil {
			return nil, err
		}
		after, err := nftGen(c)
		if err != nil {
			return nil, err
		}
		if after == gen {
			return d, nil
		}
	}
	return nil, errors.New("reading nftables rules: the ruleset kept changing during 5 reads")
}

func nftRequest(msgType uint16, flags netlink.HeaderFlags) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msgType),
			Flags: netlink.Request | flags,
		},
		// nfgenmsg: family unspec (all families), version 0, res_id 0.
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	}
}

// nftGen returns the ruleset generation id.
func nftGen(c *netlink.Conn) (uint32, error) {
	msgs, err := c.Execute(nftRequest(unix.NFT_MSG_GETGEN, 0))
	if err != nil {
		return 0, fmt.Errorf("reading nftables generation: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, fmt.Errorf("decoding nftables generation: %w", err)
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
	}
	return 0, errors.New("reading nftables generation: no NFTA_GEN_ID in the reply")
}

var familyNames = map[byte]Family{
	unix.NFPROTO_INET: "inet", unix.NFPROTO_IPV4: "ip", unix.NFPROTO_IPV6: "ip6",
	unix.NFPROTO_ARP: "arp", unix.NFPROTO_NETDEV: "netdev", unix.NFPROTO_BRIDGE: "bridge",
}

func hookName(fam Family, n uint32) string {
	if fam == "netdev" {
		return [...]string{"ingress", "egress"}[n%2]
	}
	names := []string{"prerouting", "input", "forward", "output", "postrouting", "ingress"}
	if int(n) < len(names) {
		return names[n]
	}
	return fmt.Sprintf("hook%d", n)
}

func (d *nftDump) readChains(c *netlink.Conn) error {
	msgs, err := c.Execute(nftRequest(unix.NFT_MSG_GETCHAIN, netlink.Dump))
	if err != nil {
		return fmt.Errorf("listing nftables chains: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		fam := familyNames[m.Data[0]]
		ch := Chain{Backend: Nftables, Family: fam}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return fmt.Errorf("decoding nftables chain: %w", err)
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_CHAIN_TABLE:
				ch.Table = ad.String()
			case unix.NFTA_CHAIN_NAME:
				ch.Name = ad.String()
			case unix.NFTA_CHAIN_HANDLE:
				ch.Handle = ad.Uint64()
			case unix.NFTA_CHAIN_TYPE:
				ch.Type = ad.String()
			case unix.NFTA_CHAIN_POLICY:
				ch.Policy = map[uint32]string{0: "drop", 1: "accept"}[ad.Uint32()]
			case unix.NFTA_CHAIN_HOOK:
				ad.Nested(func(nad *netlink.AttributeDecoder) error {
					nad.ByteOrder = binary.BigEndian
					for nad.Next() {
						switch nad.Type() {
						case unix.NFTA_HOOK_HOOKNUM:
							ch.Hook = hookName(fam, nad.Uint32())
						case unix.NFTA_HOOK_PRIORITY:
							ch.Priority = int(int32(nad.Uint32()))
						}
					}
					return nil
				})
			}
		}
		if err := ad.Err(); err != nil {
			return fmt.Errorf("decoding nftables chain: %w", err)
		}
		d.chains = append(d.chains, ch)
	}
	return nil
}

// decodeExpr decodes one expression; ok is false for expression kinds
// google/nftables has no type for.
func decodeExpr(fam byte, name string, data []byte) (expr.Any, bool, error) {
	if name == "notrack" {
		return &expr.Notrack{}, true, nil
	}
	e := exprFromName(name)
	if e == nil {
		return nil, false, nil
	}
	if err := expr.Unmarshal(fam, data, e); err != nil {
		return nil, false, fmt.Errorf("decoding nftables %s expression: %w", name, err)
	}
	// A verdict is an immediate into the verdict register.
	if imm, ok := e.(*expr.Immediate); ok && imm.Register == unix.NFT_REG_VERDICT && len(imm.Data) == 0 {
		v := &expr.Verdict{}
		if err := expr.Unmarshal(fam, data, v); err != nil {
			return nil, false, fmt.Errorf("decoding nftables verdict: %w", err)
		}
		return v, true, nil
	}
	return e, true, nil
}

// exprFromName mirrors google/nftables' own table of expression types.
func exprFromName(name string) expr.Any {
	switch name {
	case "ct":
		return &expr.Ct{}
	case "range":
		return &expr.Range{}
	case "meta":
		return &expr.Meta{}
	case "cmp":
		return &expr.Cmp{}
	case "counter":
		return &expr.Counter{}
	case "objref":
		return &expr.Objref{}
	case "payload":
		return &expr.Payload{}
	case "lookup":
		return &expr.Lookup{}
	case "immediate":
		return &expr.Immediate{}
	case "bitwise":
		return &expr.Bitwise{}
	case "redir":
		return &expr.Redir{}
	case "nat":
		return &expr.NAT{}
	case "limit":
		return &expr.Limit{}
	case "quota":
		return &expr.Quota{}
	case "dynset":
		return &expr.Dynset{}
	case "log":
		return &expr.Log{}
	case "exthdr":
		return &expr.Exthdr{}
	case "match":
		return &expr.Match{}
	case "target":
		return &expr.Target{}
	case "connlimit":
		return &expr.Connlimit{}
	case "queue":
		return &expr.Queue{}
	case "flow_offload":
		return &expr.FlowOffload{}
	case "reject":
		return &expr.Reject{}
	case "masq":
		return &expr.Masq{}
	case "hash":
		return &expr.Hash{}
	case "cthelper":
		return &expr.CtHelper{}
	case "synproxy":
		return &expr.SynProxy{}
	case "ctexpect":
		return &expr.CtExpect{}
	case "secmark":
		return &expr.SecMark{}
	case "cttimeout":
		return &expr.CtTimeout{}
	case "fib":
		return &expr.Fib{}
	case "numgen":
		return &expr.Numgen{}
	}
	return nil
}
