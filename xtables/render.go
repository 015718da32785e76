package xtables

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ErrUnsupported is returned by Rule for an entry with a match or target
// that Rule cannot print exactly as iptables-legacy-save does: the caller
// then asks iptables-legacy-save itself.
var ErrUnsupported = errors.New("not rendered here")

// The NAT range flags (linux/netfilter/nf_nat.h).
const (
	natMapIPs         = 0x01
	natProtoSpecified = 0x02
	natRandom         = 0x04
	natPersistent     = 0x08
	natRandomFully    = 0x10
)

// Rule renders entry i, a rule of chain, as iptables-legacy-save prints it
// ("-A CHAIN -s 10.0.0.0/8 ! -o docker0 -j MASQUERADE"), for the matches
// and targets source-NAT chains, service proxies, CNI plugins and meshes
// write into nat tables (comment, mark, addrtype, tcp, udp, statistic,
// owner, recent, set — when the table knows the set's name, Table.SetNames;
// standard verdicts and jumps, MASQUERADE, SNAT, DNAT, REDIRECT, MARK,
// CONNMARK). Any other is ErrUnsupported.
func (p *Parsed) Rule(i int, chain string) (string, error) {
	var b bytes.Buffer
	if err := p.WriteRule(&b, i, chain); err != nil {
		return "", err
	}
	return b.String(), nil
}

// WriteRule appends what Rule returns to b, without a newline: a whole
// table printed into one buffer, a line dropped again by truncating. On
// error b holds part of the line.
func (p *Parsed) WriteRule(b *bytes.Buffer, i int, chain string) error {
	b.WriteString("-A ")
	b.WriteString(chain)
	writeIP := writeIP4
	if p.Table.Family == IPv6 {
		writeIP = writeIP6
	}
	if err := writeIP(b, p.IP(i)); err != nil {
		return err
	}
	if err := p.eachMatch(i, func(m Extension) error { return p.writeMatch(b, m) }); err != nil {
		return err
	}
	return p.writeTarget(b, i)
}

// writeMatch prints " -m NAME" and the match's options.
func (p *Parsed) writeMatch(b *bytes.Buffer, m Extension) error {
	var write func(b *bytes.Buffer, d []byte) error
	var size int
	var revision uint8
	switch m.Name {
	case setMatchName: // set names come from the table
		write, size, revision = p.writeSet, setInfoSize, setRevision
	case "recent": // its mask is the family's
		write, size, revision = p.writeRecent, recentSize, recentRevision
	default:
		r, ok := matchRenderers[m.Name]
		if !ok {
			return fmt.Errorf("match %s: %w", m.Name, ErrUnsupported)
		}
		write, size, revision = r.write, r.size, r.revision
	}
	if revision != m.Revision || len(m.Data) < size {
		return fmt.Errorf("match %s revision %d: %w", m.Name, m.Revision, ErrUnsupported)
	}
	b.WriteString(" -m " + m.Name)
	if err := write(b, m.Data); err != nil {
		return fmt.Errorf("match %s: %w", m.Name, err)
	}
	return nil
}

// writeIP4 prints the ipt_ip part: addresses, interfaces, protocol,
// fragments.
func writeIP4(b *bytes.Buffer, ip []byte) error {
	inv := ip[83]
	writeAddr(b, 's', ip[0:4], ip[8:12], inv&0x08 != 0)
	writeAddr(b, 'd', ip[4:8], ip[12:16], inv&0x10 != 0)
	writeIface(b, 'i', ip[16:32], ip[48:64], inv&0x01 != 0)
	writeIface(b, 'o', ip[32:48], ip[64:80], inv&0x02 != 0)
	if err := writeProto(b, binary.NativeEndian.Uint16(ip[80:]), inv&0x40 != 0); err != nil {
		return err
	}
	if ip[82]&0x01 != 0 {
		b.WriteString(not(inv&0x20 != 0) + " -f")
	}
	return nil
}

// protoNames are the protocols iptables-legacy-save names, as its own
// table and Debian's /etc/protocols (netbase) name them; any other number
// is ErrUnsupported (save would name it from the host's /etc/protocols).
var protoNames = map[uint16]string{1: "icmp", 6: "tcp", 17: "udp", 50: "esp", 51: "ah", 58: "ipv6-icmp", 132: "sctp", 136: "udplite"}

func not(inv bool) string {
	if inv {
		return " !"
	}
	return ""
}

func writeAddr(b *bytes.Buffer, letter byte, addr, mask []byte, inv bool) {
	a, m := netip.AddrFrom4([4]byte(addr)), netip.AddrFrom4([4]byte(mask))
	if m.IsUnspecified() && a.IsUnspecified() && !inv {
		return
	}
	b.WriteString(not(inv) + " -" + string(letter) + " " + a.String() + "/")
	if bits := maskBits(binary.BigEndian.Uint32(mask)); bits >= 0 {
		b.WriteString(strconv.Itoa(bits))
	} else {
		b.WriteString(m.String())
	}
}

// maskBits is the prefix length of a contiguous netmask, or -1.
func maskBits(m uint32) int {
	n := 0
	for m&0x80000000 != 0 {
		m <<= 1
		n++
	}
	if m != 0 {
		return -1
	}
	return n
}

// writeIface prints an interface match as save_iface does: the name up to
// the mask's end, "+" for a wildcard.
func writeIface(b *bytes.Buffer, letter byte, name, mask []byte, inv bool) {
	if mask[0] == 0 {
		return
	}
	b.WriteString(not(inv) + " -" + string(letter) + " ")
	for i := 0; i < len(name); i++ {
		if mask[i] == 0 {
			if name[i-1] != 0 {
				b.WriteByte('+')
			}
			return
		}
		if name[i] != 0 {
			b.WriteByte(name[i])
		}
	}
}

// matchRenderer prints one revision of a match's options.
type matchRenderer struct {
	revision uint8
	size     int // bytes of data it reads
	write    func(b *bytes.Buffer, d []byte) error
}

var matchRenderers = map[string]matchRenderer{
	"comment": {0, 256, func(b *bytes.Buffer, d []byte) error {
		b.WriteString(" --comment")
		saveString(b, commentText(d))
		return nil
	}},
	"mark": {1, 9, func(b *bytes.Buffer, d []byte) error { // xt_mark_mtinfo1
		b.WriteString(not(d[8] != 0))
		writeMark(b, " --mark ", binary.NativeEndian.Uint32(d), binary.NativeEndian.Uint32(d[4:]), true)
		return nil
	}},
	"addrtype":  {1, 8, writeAddrtype},
	"statistic": {0, statisticSize, writeStatistic},
	"owner":     {1, ownerSize, writeOwner},
	"tcp": {0, 12, func(b *bytes.Buffer, d []byte) error { // xt_tcp: ports, option, flg_mask, flg_cmp, invflags
		if d[8] != 0 || d[9] != 0 || d[11]&^0x03 != 0 {
			return fmt.Errorf("TCP flags or options: %w", ErrUnsupported)
		}
		writePorts(b, d, d[11])
		return nil
	}},
	"udp": {0, 9, func(b *bytes.Buffer, d []byte) error {
		if d[8]&^0x03 != 0 {
			return fmt.Errorf("inversion flags %#x: %w", d[8], ErrUnsupported)
		}
		writePorts(b, d, d[8])
		return nil
	}},
}

// writeMark prints "0xMARK/0xMASK" after opt; with short, a full mask is
// left out.
func writeMark(b *bytes.Buffer, opt string, mark, mask uint32, short bool) {
	b.WriteString(opt + "0x" + strconv.FormatUint(uint64(mark), 16))
	if !short || mask != 0xffffffff {
		b.WriteString("/0x" + strconv.FormatUint(uint64(mask), 16))
	}
}

// saveString quotes s as xtables_save_string does.
func saveString(b *bytes.Buffer, s string) {
	b.WriteByte(' ')
	plain := s != ""
	for _, c := range []byte(s) {
		plain = plain && (c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z')
	}
	if plain {
		b.WriteString(s)
		return
	}
	b.WriteByte('"')
	for _, c := range []byte(s) {
		if c == '"' || c == '\\' || c == '\'' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
}

var addrTypes = []string{"UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE", "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE"}

// writeAddrtype prints struct xt_addrtype_info_v1.
func writeAddrtype(b *bytes.Buffer, d []byte) error {
	src, dst, flags := binary.NativeEndian.Uint16(d), binary.NativeEndian.Uint16(d[2:]), binary.NativeEndian.Uint32(d[4:])
	types := func(mask uint16) string {
		var names []string
		for i, n := range addrTypes {
			if mask&(1<<i) != 0 {
				names = append(names, n)
			}
		}
		return strings.Join(names, ",")
	}
	if src != 0 {
		b.WriteString(not(flags&0x1 != 0) + " --src-type " + types(src))
	}
	if dst != 0 {
		b.WriteString(not(flags&0x2 != 0) + " --dst-type " + types(dst))
	}
	if flags&0x4 != 0 {
		b.WriteString(" --limit-iface-in")
	}
	if flags&0x8 != 0 {
		b.WriteString(" --limit-iface-out")
	}
	return nil
}

// writePorts prints the port ranges of struct xt_tcp or xt_udp (spts[2],
// dpts[2], host order) with their inversion flags.
func writePorts(b *bytes.Buffer, d []byte, inv byte) {
	ne := binary.NativeEndian
	for k, opt := range []string{" --sport ", " --dport "} {
		lo, hi := ne.Uint16(d[4*k:]), ne.Uint16(d[4*k+2:])
		if lo == 0 && hi == 0xffff {
			continue
		}
		b.WriteString(not(inv&(1<<k) != 0) + opt + strconv.Itoa(int(lo)))
		if lo != hi {
			b.WriteString(":" + strconv.Itoa(int(hi)))
		}
	}
}

// writeTarget prints entry i's target.
func (p *Parsed) writeTarget(b *bytes.Buffer, i int) error {
	t := p.Target(i)
	if t.Name != standardTarget && p.Goto(i) {
		// iptables-legacy-save prints -g whatever the target; iptables
		// itself never writes that.
		return fmt.Errorf("goto to target %s: %w", t.Name, ErrUnsupported)
	}
	if p.Table.Family == IPv6 {
		if ok, err := writeTarget6(b, t); ok {
			return err
		}
	}
	switch {
	case t.Name == standardTarget:
		name, _ := p.JumpTarget(i)
		if name == "" {
			if v, _ := p.Verdict(i); v != p.Entries[i].Next {
				return fmt.Errorf("standard verdict %d: %w", v, ErrUnsupported)
			}
			return nil // fall-through: no target printed
		}
		jump := " -j "
		if p.Goto(i) {
			jump = " -g "
		}
		b.WriteString(jump + name)
		return nil
	case t.Name == "MASQUERADE" && t.Revision == 0 && len(t.Data) >= natRangeSize:
		b.WriteString(" -j MASQUERADE")
		return writeMasquerade(b, t.Data)
	case t.Name == "SNAT" && t.Revision == 0 && len(t.Data) >= natRangeSize:
		b.WriteString(" -j SNAT")
		return writeSNAT(b, t.Data)
	case t.Name == "DNAT" && t.Revision == 2 && len(t.Data) >= natRange2Size:
		return writeDNAT(b, t.Data)
	case t.Name == "REDIRECT" && t.Revision == 0 && len(t.Data) >= natRangeSize:
		return writeRedirect(b, t.Data)
	case t.Name == "CONNMARK" && t.Revision == 2 && len(t.Data) >= connmarkSize:
		return writeConnmark(b, t.Data)
	case t.Name == "MARK" && t.Revision == 2 && len(t.Data) >= 8:
		writeMark(b, " -j MARK --set-xmark ", binary.NativeEndian.Uint32(t.Data), binary.NativeEndian.Uint32(t.Data[4:]), false)
		return nil
	}
	return fmt.Errorf("target %s revision %d: %w", t.Name, t.Revision, ErrUnsupported)
}

// natRangeSize is struct nf_nat_ipv4_multi_range_compat with one range:
// rangesize, then flags, min_ip, max_ip, min port, max port.
const natRangeSize = 20

// natRange is the one range of a revision-0 MASQUERADE, SNAT or REDIRECT
// target, or of a revision-2 DNAT target (which alone has basePort).
type natRange struct {
	flags                      uint32
	minIP, maxIP               netip.Addr
	minPort, maxPort, basePort uint16
}

func decodeRange(d []byte) (natRange, error) {
	ne := binary.NativeEndian
	if n := ne.Uint32(d); n != 1 {
		return natRange{}, fmt.Errorf("%d NAT ranges: %w", n, ErrUnsupported)
	}
	return natRange{flags: ne.Uint32(d[4:]), minIP: netip.AddrFrom4([4]byte(d[8:12])), maxIP: netip.AddrFrom4([4]byte(d[12:16])),
		minPort: binary.BigEndian.Uint16(d[16:]), maxPort: binary.BigEndian.Uint16(d[18:])}, nil
}

// writeMasquerade prints MASQUERADE's options as libipt_MASQUERADE does.
func writeMasquerade(b *bytes.Buffer, d []byte) error {
	r, err := decodeRange(d)
	if err != nil {
		return err
	}
	if r.flags&natProtoSpecified != 0 {
		b.WriteString(" --to-ports " + portRange(r, "-"))
	}
	writeRandom(b, r.flags)
	return nil
}

// writeSNAT prints SNAT's options as libxt_NAT does for revision 0.
func writeSNAT(b *bytes.Buffer, d []byte) error {
	r, err := decodeRange(d)
	if err != nil {
		return err
	}
	b.WriteString(" --to-source ")
	if r.flags&natMapIPs != 0 {
		b.WriteString(r.minIP.String())
		if r.maxIP != r.minIP {
			b.WriteString("-" + r.maxIP.String())
		}
	}
	if r.flags&natProtoSpecified != 0 {
		b.WriteString(":" + portRange(r, "-"))
	}
	writeRandom(b, r.flags)
	if r.flags&natPersistent != 0 {
		b.WriteString(" --persistent")
	}
	return nil
}

func portRange(r natRange, sep string) string {
	s := strconv.Itoa(int(r.minPort))
	if r.maxPort != r.minPort {
		s += sep + strconv.Itoa(int(r.maxPort))
	}
	return s
}

func writeRandom(b *bytes.Buffer, flags uint32) {
	if flags&natRandom != 0 {
		b.WriteString(" --random")
	}
	if flags&natRandomFully != 0 {
		b.WriteString(" --random-fully")
	}
}

// SetRandomFully sets (on) or clears the fully-random flag on the NAT
// range of each entry of rules in entries, a copy of p's entry table
// (Socket.Replace hands one out): the change `--random-fully` makes, or a
// rollback undoes, in place, so that every entry keeps its size and
// offset. Each entry must be a MASQUERADE or SNAT target of the revision
// iptables writes (IPv4: revision 0 with one range; IPv6: MASQUERADE 0,
// SNAT 1); otherwise nothing is changed and the error wraps ErrUnsupported.
func (p *Parsed) SetRandomFully(entries []byte, rules []int, on bool) error {
	if len(entries) != len(p.Table.Entries) {
		return fmt.Errorf("an entry table of %d bytes, not a copy of this one (%d)", len(entries), len(p.Table.Entries))
	}
	at := make([]int, len(rules))
	for k, i := range rules {
		off, err := p.rangeFlags(i)
		if err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		at[k] = off
	}
	for _, off := range at {
		v := binary.NativeEndian.Uint32(entries[off:]) &^ natRandomFully
		if on {
			v |= natRandomFully
		}
		binary.NativeEndian.PutUint32(entries[off:], v)
	}
	return nil
}

// rangeFlags returns the offset in the entry table of the NAT range flags
// of entry i's MASQUERADE or SNAT target.
func (p *Parsed) rangeFlags(i int) (int, error) {
	t := p.Target(i)
	data := int(p.Entries[i].TargetOff) + xtHeaderSize
	switch {
	case p.Table.Family == IPv6 && (t.Name == "MASQUERADE" && t.Revision == 0 || t.Name == "SNAT" && t.Revision == 1) && len(t.Data) >= natRange6Size:
		return data, nil // nf_nat_range.flags
	case p.Table.Family == IPv4 && (t.Name == "MASQUERADE" || t.Name == "SNAT") && t.Revision == 0 && len(t.Data) >= natRangeSize:
		if _, err := decodeRange(t.Data); err != nil {
			return 0, err
		}
		return data + 4, nil // after rangesize: range[0].flags
	}
	return 0, fmt.Errorf("target %s revision %d is not a NAT range: %w", t.Name, t.Revision, ErrUnsupported)
}

// Comment returns the text of a comment match.
func Comment(m Extension) string { return commentText(m.Data) }

// commentText is a comment match's text as comment_save prints it: at
// most 255 bytes (it ends the string at the last byte of its 256).
func commentText(d []byte) string { return cString(d[:min(len(d), 255)]) }
