//go:build linux

package fix

import (
	"errors"
	"fmt"
	"slices"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/natmodel"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/nftnl"
	"github.com/snatrace/snatrace/ruleset"
)

// dialNft opens an nftables socket in the namespace, or borrows the
// shared one (shareNft).
func (f *Fixer) dialNft() (*nftnl.Conn, error) {
	return nftnl.Dial(append([]nftnl.Option{nftnl.WithNetNS(f.cfg.NS)}, f.nftOptions()...)...)
}

// nftOptions are the Fixer's nftables dial options, the namespace aside.
func (f *Fixer) nftOptions() []nftnl.Option {
	if f.shared == nil {
		return f.cfg.Nftables
	}
	return append(slices.Clip(f.cfg.Nftables), nftnl.Shared(f.shared))
}

// shareNft sends the Fixer's nftables requests over one socket until done:
// a round's read, plan, commit and check each closed one, and the kernel
// holds the namespace's commit lock for a grace period at every close
// after a commit (nftnl.Conn.Close), which a commit that followed a close
// waited for. Where no socket opens, each request opens its own (and
// reports the error).
func (f *Fixer) shareNft() (done func()) {
	if f.shared != nil {
		return func() {}
	}
	c, err := f.dialNft()
	if err != nil {
		return func() {}
	}
	f.shared = c
	return func() {
		f.shared = nil
		c.Close()
	}
}

// chainKey names a chain of the kernel.
type chainKey struct {
	fam          byte
	table, chain string
}

func chainKeyOf(l ruleset.Location) (chainKey, error) {
	fam, ok := nftnl.FamilyNumber(string(l.Family))
	if !ok {
		return chainKey{}, fmt.Errorf("%s: unknown family", l.Key())
	}
	return chainKey{fam, l.Table, l.Chain}, nil
}

// chainRules dumps the rules of one chain, in order, from one generation
// (nftnl.Consistent): a dump that a commit overlapped can mix old and new
// rules, and one that a transaction tore can give a rule twice.
func chainRules(c *nftnl.Conn, k chainKey) ([]rawRule, error) {
	var rules []rawRule
	_, err := c.Consistent(func() (bool, error) {
		msgs, intr, err := c.Dump(unix.NFT_MSG_GETRULE, k.fam, []netlink.Attribute{
			{Type: unix.NFTA_RULE_TABLE, Data: append([]byte(k.table), 0)},
			{Type: unix.NFTA_RULE_CHAIN, Data: append([]byte(k.chain), 0)},
		})
		if err != nil {
			return false, fmt.Errorf("listing rules of %s: %w", k.chain, err)
		}
		rules = make([]rawRule, 0, len(msgs))
		for _, m := range msgs {
			r, err := parseRawRule(m.Data)
			if err != nil {
				return false, err
			}
			if r.Table == k.table && r.Chain == k.chain && r.Family == k.fam {
				rules = append(rules, r)
			}
		}
		torn := nftnl.TornRules(rules, func(r *rawRule) uint64 { return r.Handle }, rawPosition)
		return intr || torn, nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing rules of %s: %w", k.chain, err)
	}
	return rules, nil
}

// chainCache reads each chain once per transaction.
type chainCache struct {
	c        *nftnl.Conn
	rules    map[chainKey][]rawRule
	byHandle map[chainKey]map[uint64]int
}

func newChainCache(c *nftnl.Conn) *chainCache {
	return &chainCache{c: c, rules: map[chainKey][]rawRule{}, byHandle: map[chainKey]map[uint64]int{}}
}

func (cc *chainCache) get(k chainKey) ([]rawRule, error) {
	if rules, ok := cc.rules[k]; ok {
		return rules, nil
	}
	rules, err := chainRules(cc.c, k)
	if err != nil {
		return nil, err
	}
	idx := make(map[uint64]int, len(rules))
	for i := range rules {
		idx[rules[i].Handle] = i
	}
	cc.rules[k], cc.byHandle[k] = rules, idx
	return rules, nil
}

// nftPrepared is a checked nftables batch ready to send.
type nftPrepared struct {
	gen     uint32
	msgs    []netlink.Message
	entries []BackupEntry
}

// prepareNft reads the raw rules the changes name and builds their
// replacement batch, guarded by generation gen: the kernel refuses the
// batch whole if another commit comes first. A plan of another generation
// is stale — unless rebase is set (the plan was made a moment ago, as
// --apply and --watch do): then the batch is built at the current
// generation, provided every rule it replaces is still the planned rule
// (same handle, same position), which on a node whose kube-proxy commits
// every second is what lets a fix through between two commits.
func (f *Fixer) prepareNft(gen uint32, changes []Change, rebase bool) (*nftPrepared, error) {
	c, err := f.dialNft()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	now, err := c.Generation()
	if err != nil {
		return nil, err
	}
	if now != gen && !rebase {
		return nil, fmt.Errorf("nftables generation %d, plan made at %d: %w", now, gen, ErrStale)
	}
	gen = now
	cache := newChainCache(c)
	prep := &nftPrepared{gen: gen}
	var setID uint32
	for _, ch := range changes {
		r, err := cache.at(ch.Location)
		if err != nil {
			return nil, err
		}
		attrs, pr, err := setNATFlags(*r, func(old uint32) uint32 { return old | flagsFullyR })
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ch.Key(), err)
		}
		if err := stillPlanned(ch, pr.OldFlags); err != nil {
			return nil, err
		}
		ms, err := replacement(c, *r, attrs, &setID)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ch.Key(), err)
		}
		prep.msgs = append(prep.msgs, ms...)
		prep.entries = append(prep.entries, BackupEntry{
			Location: ch.Location, Method: MethodNetlink, Before: ch.Before, After: ch.After, From: ch.From, To: ch.To,
			OldFlags: pr.OldFlags, NewFlags: pr.NewFlags,
		})
	}
	// The rules were read at gen only if no commit came in between.
	if after, err := c.Generation(); err != nil || after != gen {
		return nil, fmt.Errorf("nftables generation moved while the rules were read: %w", ErrStale)
	}
	return prep, nil
}

// randomFlags are the NAT flags a fix plans from and changes.
const randomFlags = uint32(natmodel.ProtoRandom | natmodel.ProtoRandomFully | natmodel.Persistent)

// stillPlanned checks that a rule's NAT flags are still those of the
// plan's mode (ch.From). An owner that rewrites a rule in place (nft
// replace rule, iptables-nft -R) keeps its handle and position, so those
// alone do not show that the rule is the one planned; a rule already
// fully-random would also make a backup entry that changes nothing.
func stillPlanned(ch Change, flags uint32) error {
	from, err := natrule.ParseMode(ch.From)
	if err != nil {
		return fmt.Errorf("%s: the plan's mode %q: %w", ch.Key(), ch.From, err)
	}
	if want := uint32(from.Flags()) & randomFlags; flags&randomFlags != want {
		return fmt.Errorf("%s: its NAT flags are 0x%x, the plan's %q has 0x%x: the rule was rewritten: %w", ch.Label(), flags&randomFlags, ch.From, want, ErrStale)
	}
	return nil
}

// at returns the rule at l: its handle at its position, or ErrStale.
func (cc *chainCache) at(l ruleset.Location) (*rawRule, error) {
	k, err := chainKeyOf(l)
	if err != nil {
		return nil, err
	}
	rules, err := cc.get(k)
	if err != nil {
		return nil, err
	}
	i, ok := cc.byHandle[k][l.Handle]
	if !ok || i+1 != l.Position {
		return nil, fmt.Errorf("%s: not at position %d: %w", l.Label(), l.Position, ErrStale)
	}
	return &rules[i], nil
}

// sendNft sends a prepared batch; ErrStale when the kernel refused it for
// its generation.
func (f *Fixer) sendNft(p *nftPrepared) error {
	c, err := f.dialNft()
	if err != nil {
		return err
	}
	defer c.Close()
	return stale(c.SendBatch(p.gen, p.msgs))
}

// stale turns a refused generation into ErrStale.
func stale(err error) error {
	if errors.Is(err, nftnl.ErrGeneration) {
		return fmt.Errorf("%w: %w", ErrStale, err)
	}
	return err
}

// rollbackNft sets the NAT flags of the entries' rules back to OldFlags, in
// one batch, for the rules still as the fix left them.
func (f *Fixer) rollbackNft(entries []BackupEntry) (restored, missing []BackupEntry, err error) {
	for attempt := 0; attempt < 5; attempt++ {
		restored, missing, err = f.tryRollbackNft(entries)
		if !errors.Is(err, ErrStale) {
			return restored, missing, err
		}
	}
	return nil, nil, fmt.Errorf("rolling back: the ruleset kept changing: %w", ErrStale)
}

func (f *Fixer) tryRollbackNft(entries []BackupEntry) (restored, missing []BackupEntry, err error) {
	c, err := f.dialNft()
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	gen, err := c.Generation()
	if err != nil {
		return nil, nil, err
	}
	cache := newChainCache(c)
	var msgs []netlink.Message
	var setID uint32
	for _, e := range entries {
		k, err := chainKeyOf(e.Location)
		if err != nil {
			return nil, nil, err
		}
		rules, err := cache.get(k)
		if err != nil {
			return nil, nil, err
		}
		r := findFixed(rules, e)
		if r == nil {
			missing = append(missing, e)
			continue
		}
		old := e.OldFlags
		attrs, _, err := setNATFlags(*r, func(uint32) uint32 { return old })
		if err != nil {
			return nil, nil, err
		}
		ms, err := replacement(c, *r, attrs, &setID)
		if err != nil {
			return nil, nil, err
		}
		msgs = append(msgs, ms...)
		restored = append(restored, e)
	}
	return restored, missing, stale(c.SendBatch(gen, msgs))
}

// findFixed finds the rule e describes as the fix left it: at its position
// or else by handle, as long as its NAT flags are the ones the fix set and,
// when the backup has its fingerprint, it is still that rule (a table its
// owner recreated reuses handles and positions).
func findFixed(rules []rawRule, e BackupEntry) *rawRule {
	fixed := func(r *rawRule) bool {
		var got uint32
		if _, _, err := setNATFlags(*r, func(old uint32) uint32 { got = old; return old }); err != nil || got != e.NewFlags {
			return false
		}
		sum, err := ruleSum(*r)
		return e.Sum == "" || err == nil && sum == e.Sum
	}
	if e.Position <= len(rules) {
		r := &rules[e.Position-1]
		if (e.Handle == 0 || r.Handle == e.Handle) && fixed(r) {
			return r
		}
	}
	if e.Handle != 0 {
		for i := range rules {
			if rules[i].Handle == e.Handle && fixed(&rules[i]) {
				return &rules[i]
			}
		}
	}
	return nil
}

// getSet reads an anonymous set's attributes and elements.
func getSet(c *nftnl.Conn, fam byte, table, name string) (attrs, elems []netlink.Attribute, err error) {
	msgs, err := c.Get(unix.NFT_MSG_GETSET, fam, []netlink.Attribute{
		{Type: unix.NFTA_SET_TABLE, Data: append([]byte(table), 0)},
		{Type: unix.NFTA_SET_NAME, Data: append([]byte(name), 0)},
	})
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
	msgs, _, err = c.Dump(unix.NFT_MSG_GETSETELEM, fam, []netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: append([]byte(table), 0)},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: append([]byte(name), 0)},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("reading the elements of set %s: %w", name, err)
	}
	for _, m := range msgs {
		if len(m.Data) <= 4 {
			continue
		}
		es, err := setElems(m.Data[4:])
		if err != nil {
			return nil, nil, fmt.Errorf("decoding the elements of set %s: %w", name, err)
		}
		elems = append(elems, es...)
	}
	return attrs, elems, nil
}

// setElems returns the elements of one NFT_MSG_NEWSETELEM message.
func setElems(data []byte) ([]netlink.Attribute, error) {
	la, err := netlink.UnmarshalAttributes(data)
	if err != nil {
		return nil, err
	}
	var out []netlink.Attribute
	for _, a := range la {
		if a.Type&nftnl.TypeMask == unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			es, err := netlink.UnmarshalAttributes(a.Data)
			if err != nil {
				return nil, err
			}
			for _, e := range es {
				out = append(out, netlink.Attribute{Type: e.Type, Data: e.Data})
			}
		}
	}
	return out, nil
}

// replacement returns the messages that replace r with attrs: a copy of
// every anonymous set r looks up (bound to the new rule by set id, ids
// drawn from *nextID), then the rule itself.
func replacement(c *nftnl.Conn, r rawRule, attrs []netlink.Attribute, nextID *uint32) ([]netlink.Message, error) {
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
