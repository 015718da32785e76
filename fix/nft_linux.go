//go:build linux

package fix

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/ruleset"
)

// familyNumbers maps ruleset families to NFPROTO numbers.
var familyNumbers = map[ruleset.Family]byte{
	"ip": unix.NFPROTO_IPV4, "ip6": unix.NFPROTO_IPV6, "inet": unix.NFPROTO_INET,
	"bridge": unix.NFPROTO_BRIDGE, "netdev": unix.NFPROTO_NETDEV, "arp": unix.NFPROTO_ARP,
}

func (f *Fixer) dialNft() (*netlink.Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: f.nsFd()})
	if err != nil {
		return nil, fmt.Errorf("opening nftables netlink socket: %w", err)
	}
	if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		c.Close()
		return nil, fmt.Errorf("setting a netlink deadline: %w", err)
	}
	return c, nil
}

func nftRequest(msgType uint16, flags netlink.HeaderFlags, fam byte, attrs []byte) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msgType),
			Flags: netlink.Request | flags,
		},
		Data: append([]byte{fam, unix.NFNETLINK_V0, 0, 0}, attrs...),
	}
}

// genID returns the nftables ruleset generation.
func genID(c *netlink.Conn) (uint32, error) {
	msgs, err := c.Execute(nftRequest(unix.NFT_MSG_GETGEN, 0, unix.AF_UNSPEC, nil))
	if err != nil {
		return 0, fmt.Errorf("reading nftables generation: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
		if err != nil {
			return 0, fmt.Errorf("decoding nftables generation: %w", err)
		}
		for _, a := range attrs {
			if a.Type&attrTypeMask == unix.NFTA_GEN_ID && len(a.Data) == 4 {
				return binary.BigEndian.Uint32(a.Data), nil
			}
		}
	}
	return 0, errors.New("reading nftables generation: no NFTA_GEN_ID in the reply")
}

// chainRules dumps the rules of one chain, in order, from one generation:
// a dump that a commit overlapped (the generation moved, or the kernel
// flagged it interrupted) can mix old and new rules, so it is retried.
func chainRules(c *netlink.Conn, fam byte, table, chain string) ([]rawRule, error) {
	for attempt := 0; attempt < 20; attempt++ {
		before, err := genID(c)
		if err != nil {
			return nil, err
		}
		rules, intr, err := dumpChain(c, fam, table, chain)
		if err != nil {
			return nil, err
		}
		after, err := genID(c)
		if err != nil {
			return nil, err
		}
		if !intr && before == after {
			return rules, nil
		}
	}
	return nil, fmt.Errorf("listing rules of %s: the ruleset kept changing during 20 reads", chain)
}

func dumpChain(c *netlink.Conn, fam byte, table, chain string) ([]rawRule, bool, error) {
	filter, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: append([]byte(table), 0)},
		{Type: unix.NFTA_RULE_CHAIN, Data: append([]byte(chain), 0)},
	})
	if err != nil {
		return nil, false, err
	}
	msgs, err := c.Execute(nftRequest(unix.NFT_MSG_GETRULE, netlink.Dump, fam, filter))
	if err != nil {
		return nil, false, fmt.Errorf("listing rules of %s: %w", chain, err)
	}
	out := make([]rawRule, 0, len(msgs))
	intr := false
	for _, m := range msgs {
		intr = intr || m.Header.Flags&netlink.DumpInterrupted != 0
		r, err := parseRawRule(m.Data)
		if err != nil {
			return nil, false, err
		}
		if r.Table == table && r.Chain == chain && r.Family == fam {
			out = append(out, r)
		}
	}
	return out, intr, nil
}

// nftPrepared is a checked nftables batch ready to send.
type nftPrepared struct {
	gen     uint32
	msgs    []netlink.Message
	entries []BackupEntry
}

type chainKey struct {
	fam          byte
	table, chain string
}

// prepareNft reads the raw rules the changes name and builds their
// replacements. It fails with ErrStale if the generation is no longer gen.
func (f *Fixer) prepareNft(gen uint32, changes []Change) (*nftPrepared, error) {
	c, err := f.dialNft()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	now, err := genID(c)
	if err != nil {
		return nil, err
	}
	if now != gen {
		return nil, fmt.Errorf("nftables generation %d, plan made at %d: %w", now, gen, ErrStale)
	}
	chains := map[chainKey][]rawRule{}
	byHandle := map[chainKey]map[uint64]int{}
	prep := &nftPrepared{gen: gen}
	var setID uint32
	for _, ch := range changes {
		fam, ok := familyNumbers[ch.Family]
		if !ok {
			return nil, fmt.Errorf("%s: unknown family", ch.Key())
		}
		k := chainKey{fam, ch.Table, ch.Chain}
		rules, ok := chains[k]
		if !ok {
			if rules, err = chainRules(c, fam, ch.Table, ch.Chain); err != nil {
				return nil, err
			}
			chains[k] = rules
			idx := make(map[uint64]int, len(rules))
			for i := range rules {
				idx[rules[i].Handle] = i
			}
			byHandle[k] = idx
		}
		i, ok := byHandle[k][ch.Handle]
		if !ok || i+1 != ch.Position {
			return nil, fmt.Errorf("%s: not at position %d: %w", ch.Key(), ch.Position, ErrStale)
		}
		r := &rules[i]
		attrs, pr, err := setNATFlags(*r, func(old uint32) uint32 { return old | flagsFullyR })
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ch.Key(), err)
		}
		ms, err := replacement(c, *r, attrs, &setID)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ch.Key(), err)
		}
		prep.msgs = append(prep.msgs, ms...)
		prep.entries = append(prep.entries, BackupEntry{
			Backend: ch.Backend, Family: ch.Family, Table: ch.Table, Chain: ch.Chain, Position: ch.Position,
			Method: MethodNetlink, Before: ch.Before, After: ch.After, From: ch.From, To: ch.To,
			OldFlags: pr.OldFlags, NewFlags: pr.NewFlags,
		})
	}
	return prep, nil
}

// sendNft sends a prepared batch; ErrStale when the kernel refused it for
// its generation.
func (f *Fixer) sendNft(p *nftPrepared) error {
	c, err := f.dialNft()
	if err != nil {
		return err
	}
	defer c.Close()
	return sendBatch(c, p.gen, p.msgs)
}

// sendBatch sends msgs as one transaction guarded by gen, and waits for
// the kernel's answer. Only the last message asks for an ack, so a batch of
// 1e4 rules does not overflow the socket with acks; the kernel reports
// every failure before that ack, and aborts the whole batch on one.
func sendBatch(c *netlink.Conn, gen uint32, msgs []netlink.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	for i := range msgs[:len(msgs)-1] {
		msgs[i].Header.Flags &^= netlink.Acknowledge
	}
	msgs[len(msgs)-1].Header.Flags |= netlink.Acknowledge
	b := batch(gen, msgs)
	size := 0
	for _, m := range b {
		size += 16 + (len(m.Data)+3)&^3
	}
	// The kernel takes a batch in one message: the send buffer must hold
	// it all (nft does the same with SO_SNDBUFFORCE).
	if size > 128<<10 {
		if err := forceSendBuffer(c, 2*size); err != nil {
			return err
		}
	}
	sent, err := c.SendMessages(b)
	if err != nil {
		return fmt.Errorf("sending the nftables batch: %w", err)
	}
	lastSeq := sent[len(sent)-2].Header.Sequence
	for {
		replies, err := c.Receive()
		if err != nil {
			if errors.Is(err, unix.ERESTART) {
				return fmt.Errorf("nftables refused the batch: %w", ErrStale)
			}
			return fmt.Errorf("replacing nftables rules: %w", err)
		}
		for _, m := range replies {
			if m.Header.Type == netlink.Error && m.Header.Sequence == lastSeq {
				return nil
			}
		}
	}
}

// rollbackNft sets the NAT flags of the entries' rules back to OldFlags, in
// one batch, for the rules still as the fix left them.
func (f *Fixer) rollbackNft(entries []BackupEntry) (restored, missing []BackupEntry, err error) {
	for attempt := 0; attempt < 5; attempt++ {
		restored, missing = nil, nil
		c, err := f.dialNft()
		if err != nil {
			return nil, nil, err
		}
		gen, err := genID(c)
		if err != nil {
			c.Close()
			return nil, nil, err
		}
		chains := map[chainKey][]rawRule{}
		var msgs []netlink.Message
		var setID uint32
		for _, e := range entries {
			fam := familyNumbers[e.Family]
			k := chainKey{fam, e.Table, e.Chain}
			rules, ok := chains[k]
			if !ok {
				if rules, err = chainRules(c, fam, e.Table, e.Chain); err != nil {
					c.Close()
					return nil, nil, err
				}
				chains[k] = rules
			}
			r := findFixed(rules, e)
			if r == nil {
				missing = append(missing, e)
				continue
			}
			old := e.OldFlags
			attrs, _, err := setNATFlags(*r, func(uint32) uint32 { return old })
			if err != nil {
				c.Close()
				return nil, nil, err
			}
			ms, err := replacement(c, *r, attrs, &setID)
			if err != nil {
				c.Close()
				return nil, nil, err
			}
			msgs = append(msgs, ms...)
			restored = append(restored, e)
		}
		err = sendBatch(c, gen, msgs)
		c.Close()
		if errors.Is(err, ErrStale) {
			continue
		}
		return restored, missing, err
	}
	return nil, nil, fmt.Errorf("rolling back: the ruleset kept changing: %w", ErrStale)
}

// findFixed finds the rule e describes as the fix left it: at its position
// or else by handle, as long as its NAT flags are the ones the fix set.
func findFixed(rules []rawRule, e BackupEntry) *rawRule {
	flagsOf := func(r *rawRule) (uint32, bool) {
		var got uint32
		_, _, err := setNATFlags(*r, func(old uint32) uint32 { got = old; return old })
		return got, err == nil
	}
	if e.Position <= len(rules) {
		r := &rules[e.Position-1]
		if fl, ok := flagsOf(r); ok && fl == e.NewFlags && (e.Handle == 0 || r.Handle == e.Handle) {
			return r
		}
	}
	if e.Handle != 0 {
		for i := range rules {
			if rules[i].Handle == e.Handle {
				if fl, ok := flagsOf(&rules[i]); ok && fl == e.NewFlags {
					return &rules[i]
				}
			}
		}
	}
	return nil
}

// forceSendBuffer sets SO_SNDBUFFORCE (CAP_NET_ADMIN: above wmem_max).
func forceSendBuffer(c *netlink.Conn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("sizing the netlink send buffer: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, n)
	}); err != nil {
		return fmt.Errorf("sizing the netlink send buffer: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("sizing the netlink send buffer to %d bytes: %w", n, serr)
	}
	return nil
}

// getSet reads an anonymous set's attributes and elements.
func getSet(c *netlink.Conn, fam byte, table, name string) (attrs, elems []netlink.Attribute, err error) {
	q, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_SET_TABLE, Data: append([]byte(table), 0)},
		{Type: unix.NFTA_SET_NAME, Data: append([]byte(name), 0)},
	})
	if err != nil {
		return nil, nil, err
	}
	msgs, err := c.Execute(nftRequest(unix.NFT_MSG_GETSET, 0, fam, q))
	if err != nil {
		return nil, nil, fmt.Errorf("reading set %s: %w", name, err)
	}
	for _, m := range msgs {
		if len(m.Data) > 4 {
			if attrs, err = netlink.UnmarshalAttributes(m.Data[4:]); err != nil {
				return nil, nil, fmt.Errorf("decoding set %s: %w", name, err)
			}
		}
	}
	if attrs == nil {
		return nil, nil, fmt.Errorf("reading set %s: no reply", name)
	}
	q, err = netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: append([]byte(table), 0)},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: append([]byte(name), 0)},
	})
	if err != nil {
		return nil, nil, err
	}
	msgs, err = c.Execute(nftRequest(unix.NFT_MSG_GETSETELEM, netlink.Dump, fam, q))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the elements of set %s: %w", name, err)
	}
	for _, m := range msgs {
		if len(m.Data) <= 4 {
			continue
		}
		la, err := netlink.UnmarshalAttributes(m.Data[4:])
		if err != nil {
			return nil, nil, fmt.Errorf("decoding the elements of set %s: %w", name, err)
		}
		for _, a := range la {
			if a.Type&attrTypeMask == unix.NFTA_SET_ELEM_LIST_ELEMENTS {
				es, err := netlink.UnmarshalAttributes(a.Data)
				if err != nil {
					return nil, nil, fmt.Errorf("decoding the elements of set %s: %w", name, err)
				}
				for _, e := range es {
					elems = append(elems, netlink.Attribute{Type: e.Type, Data: e.Data})
				}
			}
		}
	}
	return attrs, elems, nil
}

// replacement returns the messages that replace r with attrs: a copy of
// every anonymous set r looks up (bound to the new rule by set id, ids
// drawn from *nextID), then the rule itself.
func replacement(c *netlink.Conn, r rawRule, attrs []netlink.Attribute, nextID *uint32) ([]netlink.Message, error) {
	var msgs []netlink.Message
	anon := anonLookups(r)
	if len(anon) > 0 {
		ids := map[string]uint32{}
		for _, name := range anon {
			sa, se, err := getSet(c, r.Family, r.Table, name)
			if err != nil {
				return nil, err
			}
			*nextID++
			ids[name] = *nextID
			sm, err := setCopyMessages(r.Family, r.Table, sa, se, *nextID)
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, sm...)
		}
		var err error
		if attrs, err = relinkLookups(attrs, ids); err != nil {
			return nil, err
		}
	}
	m, err := replaceMessage(r, attrs)
	if err != nil {
		return nil, err
	}
	return append(msgs, m), nil
}
