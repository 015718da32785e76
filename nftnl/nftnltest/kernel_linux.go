//go:build linux

// Package nftnltest is a fake nftables kernel for tests: it answers the
// requests package nftnl sends (generation, rule and chain dumps, set reads)
// from rules given as google/nftables expressions, encoded as the kernel
// dumps them, and records the batches it is sent. With it, a reader or a
// batch builder is tested byte for byte without root.
package nftnltest

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// Rule is one rule of the fake ruleset.
type Rule struct {
	Family   byte
	Table    string
	Chain    string
	Handle   uint64
	Exprs    []expr.Any
	UserData []byte
}

// Chain is one chain of the fake ruleset; Hook < 0 is a regular chain.
type Chain struct {
	Family   byte
	Table    string
	Name     string
	Handle   uint64
	Hook     int
	Priority int32
	Type     string
}

// Kernel answers nftables requests. Its fields may be changed between
// requests (under the test's control), not during one.
type Kernel struct {
	Gen    uint32
	Chains []Chain
	Rules  []Rule
	// Sets maps a set name to its NFT_MSG_GETSET attributes and elements.
	Sets map[string]Set
	// Refuse makes the next batch fail with this errno (ERESTART: stale).
	Refuse unix.Errno
	// Dormant names the tables (of any family) whose flags say dormant;
	// a table dump lists every table that has a chain.
	Dormant []string
	// TornChains and TornRules make the next that many chain or rule
	// dumps give their last object twice, as a dump does that resumes
	// while a transaction links or unlinks chains (nftnl.Conn.Settle).
	TornChains, TornRules int
	// SkipRules makes the next that many rule dumps of more than two
	// rules leave out their second, as a dump does that resumes after an
	// aborted transaction unlinked rules it had counted.
	SkipRules int

	mu      sync.Mutex
	batches [][]netlink.Message
	seqs    []uint32
}

// Set is an anonymous set as a dump shows it.
type Set struct {
	Attrs []netlink.Attribute
	Elems []netlink.Attribute
}

// Func returns the nltest.Func to dial.
func (k *Kernel) Func() nltest.Func {
	return func(req []netlink.Message) ([]netlink.Message, error) {
		k.mu.Lock()
		defer k.mu.Unlock()
		for _, m := range req {
			k.seqs = append(k.seqs, m.Header.Sequence)
		}
		if len(req) == 0 {
			return nil, nil
		}
		if req[0].Header.Type == netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN) {
			return k.batch(req)
		}
		if len(req) != 1 {
			return nil, fmt.Errorf("nftnltest: %d messages outside a batch", len(req))
		}
		return k.answer(req[0])
	}
}

// Batches returns the messages of every batch sent so far, without the
// begin and end markers.
func (k *Kernel) Batches() [][]netlink.Message {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([][]netlink.Message(nil), k.batches...)
}

// Sequences returns the sequence number of every message received so
// far, in order. A socket numbers its messages one after another from a
// random start: numbers that run on by one came over one socket.
func (k *Kernel) Sequences() []uint32 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]uint32(nil), k.seqs...)
}

func (k *Kernel) batch(req []netlink.Message) ([]netlink.Message, error) {
	if len(req) < 2 || req[len(req)-1].Header.Type != netlink.HeaderType(unix.NFNL_MSG_BATCH_END) {
		return nil, fmt.Errorf("nftnltest: batch without an end")
	}
	body := req[1 : len(req)-1]
	k.batches = append(k.batches, body)
	last := body[len(body)-1]
	if k.Refuse != 0 {
		errno := k.Refuse
		k.Refuse = 0
		return []netlink.Message{ack(req[0], -int32(errno))}, nil
	}
	k.Gen++
	return []netlink.Message{ack(last, 0)}, nil
}

func ack(to netlink.Message, errno int32) netlink.Message {
	data := binary.NativeEndian.AppendUint32(nil, uint32(errno))
	hdr := make([]byte, 16)
	binary.NativeEndian.PutUint32(hdr[0:], 16)
	binary.NativeEndian.PutUint16(hdr[4:], uint16(to.Header.Type))
	binary.NativeEndian.PutUint32(hdr[8:], to.Header.Sequence)
	return netlink.Message{
		Header: netlink.Header{Type: netlink.Error, Sequence: to.Header.Sequence},
		Data:   append(data, hdr...),
	}
}

func (k *Kernel) answer(m netlink.Message) ([]netlink.Message, error) {
	typ := uint16(m.Header.Type) & 0xff
	fam := m.Data[0]
	filter := attrs(m.Data[4:])
	var out []netlink.Message
	switch typ {
	case unix.NFT_MSG_GETGEN:
		a, _ := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_GEN_ID, Data: binary.BigEndian.AppendUint32(nil, k.Gen)}})
		return reply(m, unix.NFT_MSG_NEWGEN, unix.AF_UNSPEC, a, false), nil
	case unix.NFT_MSG_GETRULE:
		out = skip(tear(k.rules(m, fam, filter), &k.TornRules), &k.SkipRules)
	case unix.NFT_MSG_GETCHAIN:
		out = tear(k.chains(m, fam), &k.TornChains)
	case unix.NFT_MSG_GETTABLE:
		out = k.tables(m)
	case unix.NFT_MSG_GETSET:
		s, ok := k.Sets[cstr(filter[unix.NFTA_SET_NAME])]
		if !ok {
			return nil, unix.ENOENT
		}
		a, _ := netlink.MarshalAttributes(s.Attrs)
		return reply(m, unix.NFT_MSG_NEWSET, fam, a, false), nil
	case unix.NFT_MSG_GETSETELEM:
		s := k.Sets[cstr(filter[unix.NFTA_SET_ELEM_LIST_SET])]
		list, _ := netlink.MarshalAttributes(s.Elems)
		a, _ := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NLA_F_NESTED | unix.NFTA_SET_ELEM_LIST_ELEMENTS, Data: list}})
		out = reply(m, unix.NFT_MSG_NEWSETELEM, fam, a, true)
	default:
		return nil, fmt.Errorf("nftnltest: message type %d not faked", typ)
	}
	done := netlink.Message{Header: netlink.Header{Type: netlink.Done, Flags: netlink.Multi, Sequence: m.Header.Sequence}, Data: make([]byte, 4)}
	return append(out, done), nil
}

// skip leaves out the second of out while *n > 0, counting *n down.
func skip(out []netlink.Message, n *int) []netlink.Message {
	if *n <= 0 || len(out) < 3 {
		return out
	}
	*n--
	return append(out[:1:1], out[2:]...)
}

// tear gives the last of out twice while *n > 0, counting *n down.
func tear(out []netlink.Message, n *int) []netlink.Message {
	if *n <= 0 || len(out) == 0 {
		return out
	}
	*n--
	return append(out, out[len(out)-1])
}

func (k *Kernel) rules(m netlink.Message, fam byte, filter map[uint16][]byte) []netlink.Message {
	var out []netlink.Message
	prev := map[string]uint64{}
	for _, r := range k.Rules {
		key := r.Table + "\x00" + r.Chain
		p := prev[key]
		prev[key] = r.Handle
		if fam != unix.AF_UNSPEC && r.Family != fam {
			continue
		}
		if t, ok := filter[unix.NFTA_RULE_TABLE]; ok && cstr(t) != r.Table {
			continue
		}
		if c, ok := filter[unix.NFTA_RULE_CHAIN]; ok && cstr(c) != r.Chain {
			continue
		}
		out = append(out, reply(m, unix.NFT_MSG_NEWRULE, r.Family, EncodeRule(r, p), true)...)
	}
	return out
}

// EncodeRule encodes r as the kernel dumps it (nf_tables_fill_rule_info):
// table, chain, handle, expressions, the previous rule's handle as
// position, user data.
func EncodeRule(r Rule, prev uint64) []byte {
	var elems []netlink.Attribute
	for _, e := range r.Exprs {
		b, err := expr.Marshal(r.Family, e)
		if err != nil {
			panic(fmt.Sprintf("nftnltest: marshalling %T: %v", e, err))
		}
		elems = append(elems, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: b})
	}
	eb, _ := netlink.MarshalAttributes(elems)
	a := []netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: append([]byte(r.Table), 0)},
		{Type: unix.NFTA_RULE_CHAIN, Data: append([]byte(r.Chain), 0)},
		{Type: unix.NFTA_RULE_HANDLE, Data: binary.BigEndian.AppendUint64(nil, r.Handle)},
		{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: eb},
	}
	if prev != 0 {
		a = append(a, netlink.Attribute{Type: unix.NFTA_RULE_POSITION, Data: binary.BigEndian.AppendUint64(nil, prev)})
	}
	if r.UserData != nil {
		a = append(a, netlink.Attribute{Type: unix.NFTA_RULE_USERDATA, Data: r.UserData})
	}
	b, _ := netlink.MarshalAttributes(a)
	return b
}

func (k *Kernel) tables(m netlink.Message) []netlink.Message {
	var out []netlink.Message
	seen := map[string]bool{}
	for _, c := range k.Chains {
		key := string(c.Family) + c.Table
		if seen[key] {
			continue
		}
		seen[key] = true
		var flags uint32
		if slices.Contains(k.Dormant, c.Table) {
			flags = unix.NFT_TABLE_F_DORMANT
		}
		b, _ := netlink.MarshalAttributes([]netlink.Attribute{
			{Type: unix.NFTA_TABLE_NAME, Data: append([]byte(c.Table), 0)},
			{Type: unix.NFTA_TABLE_FLAGS, Data: binary.BigEndian.AppendUint32(nil, flags)},
		})
		out = append(out, reply(m, unix.NFT_MSG_NEWTABLE, c.Family, b, true)...)
	}
	return out
}

func (k *Kernel) chains(m netlink.Message, fam byte) []netlink.Message {
	var out []netlink.Message
	for _, c := range k.Chains {
		if fam != unix.AF_UNSPEC && c.Family != fam {
			continue
		}
		a := []netlink.Attribute{
			{Type: unix.NFTA_CHAIN_TABLE, Data: append([]byte(c.Table), 0)},
			{Type: unix.NFTA_CHAIN_NAME, Data: append([]byte(c.Name), 0)},
			{Type: unix.NFTA_CHAIN_HANDLE, Data: binary.BigEndian.AppendUint64(nil, c.Handle)},
		}
		if c.Hook >= 0 {
			hook, _ := netlink.MarshalAttributes([]netlink.Attribute{
				{Type: unix.NFTA_HOOK_HOOKNUM, Data: binary.BigEndian.AppendUint32(nil, uint32(c.Hook))},
				{Type: unix.NFTA_HOOK_PRIORITY, Data: binary.BigEndian.AppendUint32(nil, uint32(c.Priority))},
			})
			a = append(a,
				netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_CHAIN_HOOK, Data: hook},
				netlink.Attribute{Type: unix.NFTA_CHAIN_POLICY, Data: binary.BigEndian.AppendUint32(nil, 1)},
				netlink.Attribute{Type: unix.NFTA_CHAIN_TYPE, Data: append([]byte(c.Type), 0)})
		}
		b, _ := netlink.MarshalAttributes(a)
		out = append(out, reply(m, unix.NFT_MSG_NEWCHAIN, c.Family, b, true)...)
	}
	return out
}

func reply(req netlink.Message, typ uint16, fam byte, attrs []byte, multi bool) []netlink.Message {
	h := netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ), Sequence: req.Header.Sequence, PID: req.Header.PID}
	if multi {
		h.Flags = netlink.Multi
	}
	return []netlink.Message{{Header: h, Data: append([]byte{fam, unix.NFNETLINK_V0, 0, 0}, attrs...)}}
}

func attrs(b []byte) map[uint16][]byte {
	out := map[uint16][]byte{}
	as, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		return out
	}
	for _, a := range as {
		out[a.Type&0x3fff] = a.Data
	}
	return out
}

func cstr(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
