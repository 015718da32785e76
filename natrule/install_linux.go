//go:build linux

package natrule

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/tool"
)

// Install replaces the source-NAT rules snatrace owns in ns with rules, through
// backend. For nft that is table "ip snatrace", swapped in one netlink batch;
// for the iptables backends the nat table, restored in one iptables-restore
// call. Rules of the other backends are left alone: call Remove for them.
func Install(ctx context.Context, ns *netns.NS, backend Backend, rules []Rule) error {
	switch backend {
	case Nftables:
		if needsNFTText(rules) {
			return installNFTText(ctx, ns, rules)
		}
		return installNFT(ns, rules)
	case IptablesNFT, IptablesLegacy:
		doc, err := IptablesRestore(rules)
		if err != nil {
			return err
		}
		_, restore, _ := Tools(backend, IPv4)
		_, err = runIn(ctx, ns, tool.Command(restore, "-w").WithStdin(doc))
		return err
	}
	return fmt.Errorf("installing NAT rules: unknown backend %q", backend)
}

// Remove deletes what Install put in ns through backend. Removing what is not
// there is not an error.
func Remove(ctx context.Context, ns *netns.NS, backend Backend) error {
	switch backend {
	case Nftables:
		c, err := nftables.New(nftables.WithNetNSFd(ns.Fd()))
		if err != nil {
			return fmt.Errorf("opening nftables in %s: %w", ns, err)
		}
		c.DelTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4})
		if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("deleting table ip %s in %s: %w", TableName, ns, err)
		}
		return nil
	case IptablesNFT, IptablesLegacy:
		doc, _ := IptablesRestore(nil)
		_, restore, _ := Tools(backend, IPv4)
		_, err := runIn(ctx, ns, tool.Command(restore, "-w").WithStdin(doc))
		return err
	}
	return fmt.Errorf("removing NAT rules: unknown backend %q", backend)
}

// Dump returns the backend's own text of the rules snatrace installed in ns:
// `nft list table ip snatrace` for nft, `iptables-save -t nat` otherwise. It
// runs the real userspace tool, so a test can compare what each backend made.
func Dump(ctx context.Context, ns *netns.NS, backend Backend) (string, error) {
	if backend == Nftables {
		return runIn(ctx, ns, tool.Command("nft", "list", "table", "ip", TableName))
	}
	save, _, ok := Tools(backend, IPv4)
	if !ok {
		return "", fmt.Errorf("dumping NAT rules: unknown backend %q", backend)
	}
	return runIn(ctx, ns, tool.Command(save, "-t", "nat"))
}

// runIn runs c inside ns and returns its stdout.
func runIn(ctx context.Context, ns *netns.NS, c tool.Cmd) (string, error) {
	out, err := tool.Exec{NS: ns}.Run(ctx, c)
	if err != nil {
		return "", fmt.Errorf("in %s: %w", ns, err)
	}
	return string(out), nil
}

// installNFTText installs rules through `nft -f` in one transaction, the
// same table and chain installNFT makes. It is the nft backend's path for
// the rules google/nftables cannot express.
func installNFTText(ctx context.Context, ns *netns.NS, rules []Rule) error {
	doc, err := NFTScript(rules)
	if err != nil {
		return err
	}
	if _, err := runIn(ctx, ns, tool.Command("nft", "-f", "-").WithStdin(doc)); err != nil {
		return fmt.Errorf("installing table ip %s in %s: %w", TableName, ns, err)
	}
	return nil
}

func installNFT(ns *netns.NS, rules []Rule) error {
	c, err := nftables.New(nftables.WithNetNSFd(ns.Fd()))
	if err != nil {
		return fmt.Errorf("opening nftables in %s: %w", ns, err)
	}
	table := &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
	// Add-then-delete-then-add makes the swap one atomic batch whether or not
	// the table exists already.
	c.AddTable(table)
	c.DelTable(table)
	c.AddTable(table)
	chain := c.AddChain(&nftables.Chain{
		Name:     ChainName,
		Table:    table,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource,
	})
	for _, r := range rules {
		exprs, err := nftExprs(r)
		if err != nil {
			return err
		}
		if exprs == nil {
			continue
		}
		c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: exprs})
	}
	if err := c.Flush(); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EAFNOSUPPORT) {
			return fmt.Errorf("installing table ip %s in %s: %w (does this kernel have nftables NAT: nf_tables, nft_chain_nat, nft_masq, nf_nat?)", TableName, ns, err)
		}
		return fmt.Errorf("installing table ip %s in %s: %w", TableName, ns, err)
	}
	return nil
}

// nftExprs compiles r to the expressions `nft` would make for
// `ip saddr SRC oifname IFACE <mode>`.
func nftExprs(r Rule) ([]expr.Any, error) {
	m := r.Mode
	if m.Action == None {
		return nil, nil
	}
	var e []expr.Any
	if r.Src.IsValid() {
		if !r.Src.Addr().Is4() {
			return nil, fmt.Errorf("source %s: table ip takes IPv4 only: %w", r.Src, ErrUnsupported)
		}
		p := r.Src.Masked()
		bits := net4Mask(p.Bits())
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: bits, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Addr().AsSlice()},
		)
	}
	if r.OutIface != "" {
		name := make([]byte, unix.IFNAMSIZ)
		copy(name, r.OutIface)
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
		)
	}
	if r.Proto != "" {
		p, ok := protoNumbers[r.Proto]
		if !ok {
			return nil, fmt.Errorf("protocol %q: %w", r.Proto, ErrUnsupported)
		}
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
		)
	}
	// Registers as nft uses them: addresses in 1 and 2, ports in 3 and 4.
	if m.HasPorts() {
		if r.Proto == "" {
			return nil, fmt.Errorf("%q: a port range needs a protocol match: %w", m, ErrUnsupported)
		}
		e = append(e, &expr.Immediate{Register: 3, Data: binaryutil.BigEndian.PutUint16(m.PortMin)})
		e = append(e, &expr.Immediate{Register: 4, Data: binaryutil.BigEndian.PutUint16(m.PortMax)})
	}
	switch m.Action {
	case Masquerade:
		if m.HasPorts() {
			// google/nftables (v0.3.0) sends no flags for a masq expression
			// with ports: Install sends such rules through nft(8).
			return nil, fmt.Errorf("%q: masquerade with ports: %w (google/nftables drops its flags, PROTO_SPECIFIED included)", m, ErrUnsupported)
		}
		q := &expr.Masq{Random: m.Random, FullyRandom: m.FullyRandom, Persistent: m.Persistent}
		if m.HasPorts() {
			q.ToPorts, q.RegProtoMin, q.RegProtoMax = true, 3, 4
		}
		e = append(e, q)
	case SNAT:
		if !m.AddrMin.Is4() {
			return nil, fmt.Errorf("%q: table ip takes IPv4 only: %w", m, ErrUnsupported)
		}
		e = append(e,
			&expr.Immediate{Register: 1, Data: m.AddrMin.AsSlice()},
			&expr.Immediate{Register: 2, Data: m.AddrMax.AsSlice()},
		)
		n := &expr.NAT{
			Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4,
			RegAddrMin: 1, RegAddrMax: 2,
			Random: m.Random, FullyRandom: m.FullyRandom, Persistent: m.Persistent,
		}
		if m.HasPorts() {
			n.RegProtoMin, n.RegProtoMax, n.Specified = 3, 4, true
		}
		e = append(e, n)
	}
	return e, nil
}

var protoNumbers = map[string]byte{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP}

func net4Mask(bits int) []byte {
	m := make([]byte, 4)
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}
