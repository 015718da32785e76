//go:build linux

package ruleset

import (
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/nftnl"
)

// scope returns what d read.
func (d *nftDump) scope() *nftScope {
	s := &nftScope{chains: map[tableKey]bool{}, maps: map[tableKey]bool{}, tables: map[tableKey]bool{}}
	for _, i := range d.reached {
		c := &d.list.chains[i]
		s.chains[tableKey{c.Family, c.Table, c.Name}] = true
		s.tables[tableKey{c.Family, c.Table, ""}] = true
	}
	for _, m := range d.maps {
		s.maps[m] = true
	}
	for t := range d.list.dormant {
		s.tables[t] = true // waking up runs its chains
	}
	return s
}

// Affected reports whether commit c may have changed what rs read over
// netlink: a rule of a chain it read, such a chain, a map it followed, a
// table holding them, or a new nat base chain at postrouting or input. A
// commit whose events were lost, or a Ruleset not read live, is always
// affected.
func (rs *Ruleset) Affected(c nftnl.Commit) bool {
	if rs == nil || rs.scope == nil {
		return true
	}
	return rs.scope.affects(c)
}

// affects reports whether commit c may have changed what s covers.
func (s *nftScope) affects(c nftnl.Commit) bool {
	if c.Lost {
		return true
	}
	for _, ev := range c.Events {
		if s.affectedBy(ev) {
			return true
		}
	}
	return false
}

func (s *nftScope) affectedBy(ev nftnl.Event) bool {
	fam := Family(nftnl.FamilyName(ev.Family))
	switch ev.Type {
	case unix.NFT_MSG_DELTABLE, nftnl.MsgDestroyTable,
		unix.NFT_MSG_NEWTABLE: // an existing table's flags: dormant or awake
		return s.tables[tableKey{fam, ev.Table, ""}]
	case unix.NFT_MSG_NEWCHAIN, unix.NFT_MSG_DELCHAIN, nftnl.MsgDestroyChain:
		if s.chains[tableKey{fam, ev.Table, ev.Name}] {
			return true
		}
		c, err := decodeChain(append([]byte{ev.Family, 0, 0, 0}, ev.Data...))
		return err != nil || sourceNATHook(c)
	case unix.NFT_MSG_NEWRULE, unix.NFT_MSG_DELRULE, nftnl.MsgDestroyRule:
		return s.chains[tableKey{fam, ev.Table, ev.Name}]
	case unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_DELSETELEM, nftnl.MsgDestroySetElem,
		unix.NFT_MSG_DELSET, nftnl.MsgDestroySet:
		return s.maps[tableKey{fam, ev.Table, ev.Name}]
	}
	return false
}
