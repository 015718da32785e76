package xtables

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"sort"
)

// Sizes of the kernel's structures shared by both families
// (linux/netfilter/x_tables.h), as the 64-bit kernel lays them out for
// userspace: every entry and every match or target is 8-byte aligned. The
// entries' own layout is the family's (layout).
const (
	xtHeaderSize   = 32 // struct xt_entry_match / xt_entry_target, user view
	xtNameLen      = 29
	errorNameLen   = 30 // xt_error_target.errorname (XT_FUNCTION_MAXNAMELEN)
	standardTarget = "" // XT_STANDARD_TARGET
	errorTarget    = "ERROR"
)

// Standard verdicts (-NF_x - 1) and XT_RETURN.
const (
	verdictDrop   = -1
	verdictAccept = -2
	verdictQueue  = -4
	verdictReturn = -5
)

// hookNames are the built-in chains by hook number (NF_INET_*).
var hookNames = [5]string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

// ErrMalformed is returned for an entry table that breaks the kernel's own
// layout rules (it never hands one out; a fuzzer or a truncated copy does).
var ErrMalformed = errors.New("malformed iptables entry table")

// Info is what IPT_SO_GET_INFO says about a table.
type Info struct {
	Name       string
	ValidHooks uint32
	HookEntry  [5]uint32
	Underflow  [5]uint32
	NumEntries uint32
	Size       uint32
}

// Table is a snapshot of one iptables-legacy table: its info and the entry
// table exactly as IPT_SO_GET_ENTRIES (IP6T_SO_GET_ENTRIES) returned it.
type Table struct {
	Info
	Family  Family
	Entries []byte
	// SetNames are the names of the ipsets the table's set matches name,
	// by index, as the ipset module gave them when the table was read
	// (Socket.Get): the entries hold only the index. A set match whose
	// set is not here is not rendered.
	SetNames map[uint16]string
	buf      []byte // the memory Entries lies in, with room for a commit's header
}

// Extension is a match or target of an entry: its name, revision and the
// data after the 32-byte header.
type Extension struct {
	Name     string
	Revision uint8
	Data     []byte
}

// Entry locates one entry in Table.Entries; its parts are read from the
// table on demand (a kube-proxy node has 170,000 entries, of which a fix
// reads a handful).
type Entry struct {
	Offset    int32 // of the entry
	TargetOff int32 // of its target
	Next      int32 // offset of the next entry
}

// Verdict returns the standard target's verdict of entry i: negative for
// ACCEPT, DROP, QUEUE and RETURN, else the offset jumped to. ok is false
// for other targets.
func (p *Parsed) Verdict(i int) (v int32, ok bool) {
	e := p.Entries[i]
	data := int(e.TargetOff) + xtHeaderSize
	if !p.targetIs(i, standardTarget) || data+4 > int(e.Next) {
		return 0, false
	}
	return int32(binary.NativeEndian.Uint32(p.Table.Entries[data:])), true
}

// IP returns entry i's IP part: struct ipt_ip, or ip6t_ip6 in an IPv6
// table.
func (p *Parsed) IP(i int) []byte {
	off := int(p.Entries[i].Offset)
	return p.Table.Entries[off : off+p.l.ipSize]
}

// Goto reports whether entry i's jump is a goto (-g).
func (p *Parsed) Goto(i int) bool { return p.IP(i)[p.l.flags]&p.l.gotoFlag != 0 }

// Counters returns entry i's packet and byte counters.
func (p *Parsed) Counters(i int) (packets, bytes uint64) {
	b := p.Table.Entries[int(p.Entries[i].Offset)+p.l.counters:]
	return binary.NativeEndian.Uint64(b), binary.NativeEndian.Uint64(b[8:])
}

// Target returns entry i's target.
func (p *Parsed) Target(i int) Extension {
	e := p.Entries[i]
	x, _, _ := extensionAt(p.Table.Entries, int(e.TargetOff), int(e.Next)) // checked by Parse
	return x
}

// targetIs reports whether entry i's target is the named one, without
// copying the name.
func (p *Parsed) targetIs(i int, name string) bool {
	off := int(p.Entries[i].TargetOff) + 2
	return cStringIs(p.Table.Entries[off:off+xtNameLen], name)
}

// Matches returns entry i's matches in order.
func (p *Parsed) Matches(i int) []Extension {
	var out []Extension
	p.eachMatch(i, func(x Extension) error { out = append(out, x); return nil })
	return out
}

// eachMatch calls fn with entry i's matches in order, until it fails: a
// table printed whole allocates no slice per rule.
func (p *Parsed) eachMatch(i int, fn func(Extension) error) error {
	e := p.Entries[i]
	for m := int(e.Offset) + p.l.entrySize; m < int(e.TargetOff); {
		x, size, _ := extensionAt(p.Table.Entries, m, int(e.TargetOff)) // checked by Parse
		if err := fn(x); err != nil {
			return err
		}
		m += size
	}
	return nil
}

// Chain is a chain of the table: its name, for a built-in chain its hook
// and policy, and its rules (indexes into Parsed.Entries), without the
// chain's head and tail entries.
type Chain struct {
	Name    string
	Hook    int // -1 for a user chain
	Policy  string
	Rules   []int
	first   int // entry offset range the chain covers, head to tail
	last    int
	tailIdx int
}

// Parsed is a table cut into entries and chains, as libiptc sees it.
type Parsed struct {
	Table   *Table
	Entries []Entry
	Chains  []Chain
	byName  map[string]int
	l       *layout // the table's family's
}

// Parse walks t's entries and chains. It checks every size and offset
// against the table, so a malformed table is an error, never a panic.
func Parse(t *Table) (*Parsed, error) {
	p := &Parsed{Table: t, byName: map[string]int{}, l: t.Family.layout()}
	if err := p.entries(); err != nil {
		return nil, err
	}
	if err := p.chains(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Parsed) entries() error {
	b := p.Table.Entries
	p.Entries = make([]Entry, 0, min(int(p.Table.NumEntries), len(b)/p.l.entrySize)) // the count is a claim
	for off := 0; off < len(b); {
		e, err := p.l.entryAt(b, off)
		if err != nil {
			return err
		}
		p.Entries = append(p.Entries, e)
		off = int(e.Next)
	}
	if len(p.Entries) != int(p.Table.NumEntries) {
		return fmt.Errorf("%w: %d entries, the table says %d", ErrMalformed, len(p.Entries), p.Table.NumEntries)
	}
	heads := len(hookNames)
	for i := range p.Entries {
		if p.targetIs(i, errorTarget) {
			heads++
		}
	}
	p.Chains = make([]Chain, 0, heads) // a kube-proxy table has 36,000
	p.byName = make(map[string]int, heads)
	return nil
}

// entryAt checks the entry at off, its matches and its target, and
// locates them.
func (l *layout) entryAt(b []byte, off int) (Entry, error) {
	if off%8 != 0 || off+l.entrySize > len(b) {
		return Entry{}, fmt.Errorf("%w: entry at %d runs past the table (%d bytes)", ErrMalformed, off, len(b))
	}
	tOff := int(binary.NativeEndian.Uint16(b[off+l.targetOff:]))
	next := int(binary.NativeEndian.Uint16(b[off+l.nextOff:]))
	if tOff < l.entrySize || tOff+xtHeaderSize > next || off+next > len(b) || next%8 != 0 {
		return Entry{}, fmt.Errorf("%w: entry at %d: target offset %d, next offset %d", ErrMalformed, off, tOff, next)
	}
	for m := off + l.entrySize; m < off+tOff; {
		size, err := extensionSize(b, m, off+tOff)
		if err != nil {
			return Entry{}, fmt.Errorf("entry at %d: match: %w", off, err)
		}
		m += size
	}
	if _, err := extensionSize(b, off+tOff, off+next); err != nil {
		return Entry{}, fmt.Errorf("entry at %d: target: %w", off, err)
	}
	return Entry{Offset: int32(off), TargetOff: int32(off + tOff), Next: int32(off + next)}, nil
}

// extensionAt decodes the match or target at off, which must end by end.
func extensionAt(b []byte, off, end int) (Extension, int, error) {
	size, err := extensionSize(b, off, end)
	if err != nil {
		return Extension{}, 0, err
	}
	return Extension{Name: extensionName(b[off+2 : off+2+xtNameLen]), Revision: b[off+2+xtNameLen], Data: b[off+xtHeaderSize : off+size]}, size, nil
}

// extensionSize checks the size of the match or target at off against end.
func extensionSize(b []byte, off, end int) (int, error) {
	if off+xtHeaderSize > end {
		return 0, fmt.Errorf("%w: header at %d runs past %d", ErrMalformed, off, end)
	}
	size := int(binary.NativeEndian.Uint16(b[off:]))
	if size < xtHeaderSize || off+size > end || size%8 != 0 {
		return 0, fmt.Errorf("%w: size %d at %d", ErrMalformed, size, off)
	}
	return size, nil
}

// chains cuts the entries into chains the way libiptc does: a chain starts
// at a hook entry or at an ERROR entry naming it, and its last entry (the
// built-in chain's policy, the user chain's RETURN) is not a rule. The
// table ends with an ERROR entry named "ERROR". A chain's rules are
// consecutive entries: Rules slices one shared index.
func (p *Parsed) chains() error {
	n := len(p.Entries)
	if n == 0 || !p.targetIs(n-1, errorTarget) || cString(p.errorName(n-1)) != errorTarget {
		return fmt.Errorf("%w: no final ERROR entry", ErrMalformed)
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	cur, first := -1, 0 // the open chain and the index of its first rule
	for i := 0; i < n; i++ {
		off := int(p.Entries[i].Offset)
		h := p.hookAt(off)
		isError := p.targetIs(i, errorTarget)
		if !isError && h < 0 {
			if cur < 0 {
				return fmt.Errorf("%w: entry at %d outside any chain", ErrMalformed, off)
			}
			continue
		}
		if err := p.closeChain(cur, all[first:i]); err != nil {
			return err
		}
		if i == n-1 {
			return nil
		}
		c := Chain{Name: cString(p.errorName(i)), Hook: -1, first: off}
		first = i + 1
		if !isError {
			c.Name, c.Hook, first = hookNames[h], h, i
		}
		if cur = p.addChain(c); cur < 0 {
			return fmt.Errorf("%w: chain %q twice", ErrMalformed, c.Name)
		}
	}
	return nil
}

// hookAt is the hook whose chain starts at off, or -1.
func (p *Parsed) hookAt(off int) int {
	for h := range hookNames {
		if p.Table.ValidHooks&(1<<h) != 0 && int(p.Table.HookEntry[h]) == off {
			return h
		}
	}
	return -1
}

// errorName is the errorname of entry i, an ERROR target.
func (p *Parsed) errorName(i int) []byte {
	d := p.Target(i).Data
	return d[:min(len(d), errorNameLen)]
}

// closeChain ends chain cur (none if -1), whose entries after its head are
// ents: the last is its policy or RETURN, the others its rules.
func (p *Parsed) closeChain(cur int, ents []int) error {
	if cur < 0 {
		return nil
	}
	c := &p.Chains[cur]
	if len(ents) == 0 {
		return fmt.Errorf("%w: chain %s has no tail entry", ErrMalformed, c.Name)
	}
	tail := ents[len(ents)-1]
	c.Rules, c.tailIdx, c.last = ents[:len(ents)-1:len(ents)-1], tail, int(p.Entries[tail].Offset)
	v, ok := p.Verdict(tail)
	if !ok {
		return fmt.Errorf("%w: chain %s does not end in a standard verdict", ErrMalformed, c.Name)
	}
	if c.Hook >= 0 {
		if int(p.Table.Underflow[c.Hook]) != c.last {
			return fmt.Errorf("%w: chain %s: policy at %d, underflow %d", ErrMalformed, c.Name, c.last, p.Table.Underflow[c.Hook])
		}
		c.Policy = verdictName(v)
	}
	return nil
}

// addChain appends c and returns its index, or -1 if its name is taken.
func (p *Parsed) addChain(c Chain) int {
	if _, ok := p.byName[c.Name]; ok {
		return -1
	}
	p.byName[c.Name] = len(p.Chains)
	p.Chains = append(p.Chains, c)
	return len(p.Chains) - 1
}

// Chain returns the named chain, or nil.
func (p *Parsed) Chain(name string) *Chain {
	i, ok := p.byName[name]
	if !ok {
		return nil
	}
	return &p.Chains[i]
}

// chainAt returns the index of the chain whose entries cover offset (a
// jump's verdict points just past a user chain's head), or -1. Chains are
// in entry order.
func (p *Parsed) chainAt(offset int) int {
	i := sort.Search(len(p.Chains), func(i int) bool { return p.Chains[i].last >= offset })
	if i < len(p.Chains) && p.Chains[i].first <= offset {
		return i
	}
	return -1
}

// JumpChain returns the index in Chains of the chain entry i jumps or goes
// to, or -1 when it does not go to a chain.
func (p *Parsed) JumpChain(i int) int {
	v, ok := p.Verdict(i)
	if !ok || v < 0 || v == p.Entries[i].Next {
		return -1
	}
	return p.chainAt(int(v))
}

// fingerprintSeed keys Fingerprint for this process.
var fingerprintSeed = maphash.MakeSeed()

// Fingerprint hashes t's entries without their counters: it changes when a
// rule, chain or policy does, not when traffic moves. It is keyed by a seed
// random per process, so fingerprints compare only within one process; two
// tables that differ share one by chance with probability about 2⁻⁶⁴.
// hash/maphash is not a cryptographic hash: the check it serves guards
// against writers that ignore the xtables lock, not against someone who
// can write rules (and so change the table anyway). A check can thus keep
// a 60 MB table's fingerprint instead of the table while its memory is
// read into again (Socket.GetInto). A malformed table is an error.
func (t *Table) Fingerprint() (uint64, error) {
	var h maphash.Hash
	h.SetSeed(fingerprintSeed)
	b, l := t.Entries, t.Family.layout()
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	for off := 0; off < len(b); {
		e, err := l.entryAt(b, off)
		if err != nil {
			return 0, err
		}
		h.Write(b[off : off+l.counters])
		h.Write(b[off+l.counters+16 : e.Next])
		off = int(e.Next)
	}
	return h.Sum64(), nil
}

// JumpTarget returns where entry i's standard target goes: a chain's name
// (chain true), a verdict's name (ACCEPT, DROP, QUEUE, RETURN), or "" for
// a fall-through or another target.
func (p *Parsed) JumpTarget(i int) (name string, chain bool) {
	if c := p.JumpChain(i); c >= 0 {
		return p.Chains[c].Name, true
	}
	if v, ok := p.Verdict(i); ok && v < 0 {
		return verdictName(v), false
	}
	return "", false
}

func verdictName(v int32) string {
	switch v {
	case verdictAccept:
		return "ACCEPT"
	case verdictDrop:
		return "DROP"
	case verdictQueue:
		return "QUEUE"
	case verdictReturn:
		return "RETURN"
	}
	return fmt.Sprintf("verdict %d", v)
}

// cStringIs reports whether the NUL-terminated string in b is s.
func cStringIs(b []byte, s string) bool {
	return len(b) > len(s) && string(b[:len(s)]) == s && b[len(s)] == 0
}

// commonNames are the extension names of nearly every rule iptables
// writes: extensionName returns them without a copy (a kube-proxy table
// has 300,000 matches and targets).
var commonNames = map[string]string{}

func init() {
	for _, n := range []string{"", "ERROR", "comment", "tcp", "udp", "mark", "statistic", "set", "addrtype", "conntrack",
		"multiport", "MASQUERADE", "SNAT", "DNAT", "REDIRECT", "MARK", "CONNMARK", "RETURN"} {
		commonNames[n] = n
	}
}

// extensionName is an extension's NUL-terminated name.
func extensionName(b []byte) string {
	b = cBytes(b)
	if s, ok := commonNames[string(b)]; ok {
		return s
	}
	return string(b)
}

// cString is b up to its first NUL.
func cString(b []byte) string { return string(cBytes(b)) }

// cBytes is b up to its first NUL.
func cBytes(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}
