package xtables

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
)

// The set match (xt_set), revision 4: struct xt_set_info_match_v4 is
// struct xt_set_info {u16 index; u8 dim; u8 flags} at 0, the packets and
// bytes counter matches {aligned u64 value; u8 op} at 8 and 24, u32 flags
// at 40; 48 bytes. The kernel names the set only by its index: its name
// comes from the ipset module (setNames).
const (
	setRevision  = 4
	setInfoSize  = 48
	setMatchName = "set"

	setInvMatch = 0x01 // IPSET_INV_MATCH in xt_set_info.flags; bit i (1..dim): src
	setDimMax   = 6    // IPSET_DIM_MAX

	setReturnNomatch     = 1 << 7 // IPSET_FLAG_RETURN_NOMATCH
	setSkipCounter       = 1 << 3 // IPSET_FLAG_SKIP_COUNTER_UPDATE
	setSkipSubcounter    = 1 << 4 // IPSET_FLAG_SKIP_SUBCOUNTER_UPDATE
	setKnownMatchFlags   = setReturnNomatch | setSkipCounter | setSkipSubcounter
	setCounterOpsDefined = 4 // IPSET_COUNTER_EQ, _NE, _LT, _GT
)

// setIndexes returns the set indexes that entries, of layout l, name in
// their set matches, each once. It reads only what it can: a malformed
// table is Parse's to report.
func (l *layout) setIndexes(entries []byte) []uint16 {
	seen := map[uint16]bool{}
	var out []uint16
	for off := 0; off+l.entrySize <= len(entries); {
		e, err := l.entryAt(entries, off)
		if err != nil {
			break
		}
		for m := int(e.Offset) + l.entrySize; m < int(e.TargetOff); {
			x, size, _ := extensionAt(entries, m, int(e.TargetOff)) // checked by entryAt
			if x.Name == setMatchName && x.Revision == setRevision && len(x.Data) >= setInfoSize {
				if i := binary.NativeEndian.Uint16(x.Data); !seen[i] {
					seen[i] = true
					out = append(out, i)
				}
			}
			m += size
		}
		off = int(e.Next)
	}
	return out
}

// writeSet prints a set match's options as iptables-legacy-save 1.8.9
// does (libxt_set's set_save_v4): "[!] --match-set NAME src,dst", then
// the flags and counter conditions. A set whose name the table was not
// told, or a flag or condition this does not know, is ErrUnsupported.
func (p *Parsed) writeSet(b *bytes.Buffer, d []byte) error {
	ne := binary.NativeEndian
	index, dim, flags := ne.Uint16(d), d[2], d[3]
	name, ok := p.Table.SetNames[index]
	if !ok {
		return fmt.Errorf("ipset index %d: name unknown: %w", index, ErrUnsupported)
	}
	mflags := ne.Uint32(d[40:])
	if dim > setDimMax || flags>>(dim+1) != 0 || mflags&^setKnownMatchFlags != 0 ||
		d[16] > setCounterOpsDefined || d[32] > setCounterOpsDefined {
		return fmt.Errorf("set match dim %d flags %#x/%#x: %w", dim, flags, mflags, ErrUnsupported)
	}
	b.WriteString(not(flags&setInvMatch != 0) + " --match-set " + name)
	for i := 1; i <= int(dim); i++ {
		sep, dir := ",", "dst"
		if i == 1 {
			sep = " "
		}
		if flags&(1<<i) != 0 {
			dir = "src"
		}
		b.WriteString(sep + dir)
	}
	if mflags&setReturnNomatch != 0 {
		b.WriteString(" --return-nomatch")
	}
	if mflags&setSkipCounter != 0 {
		b.WriteString(" ! --update-counters")
	}
	if mflags&setSkipSubcounter != 0 {
		b.WriteString(" ! --update-subcounters")
	}
	writeSetCounter(b, "packets", d[16], ne.Uint64(d[8:]))
	writeSetCounter(b, "bytes", d[32], ne.Uint64(d[24:]))
	return nil
}

// writeSetCounter prints one counter condition (set_printv3_counter).
func writeSetCounter(b *bytes.Buffer, name string, op uint8, value uint64) {
	v := strconv.FormatUint(value, 10)
	switch op {
	case 1: // IPSET_COUNTER_EQ
		b.WriteString(" --" + name + "-eq " + v)
	case 2: // IPSET_COUNTER_NE
		b.WriteString(" ! --" + name + "-eq " + v)
	case 3: // IPSET_COUNTER_LT
		b.WriteString(" --" + name + "-lt " + v)
	case 4: // IPSET_COUNTER_GT
		b.WriteString(" --" + name + "-gt " + v)
	}
}
