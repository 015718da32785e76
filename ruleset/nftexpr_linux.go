//go:build linux

package ruleset

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/natmodel"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/nftnl"
)

// described is what a rule's expressions say, in nft syntax.
type described struct {
	match   []string // match part, one item per condition
	stmts   []string // statements after the match (verdicts, sets)
	nat     *natrule.Mode
	natText string
	xt      bool // the NAT action is an xtables target
	comment string
	jumps   []string
	warn    string
}

// regVal is what the rule has loaded into a register so far.
type regVal struct {
	desc  string // "ip saddr", "oifname", "meta mark"
	kind  string // "addr", "ifname", "proto", "port", "hex", "imm", ""
	bits  int    // prefix length once masked, -1 when not a prefix
	data  []byte // immediate data
	proto string // l4 protocol known when the load happened (for ports)
}

// describer walks a rule's expressions, tracking what each register holds.
type describer struct {
	d    described
	regs map[uint32]regVal
	l4   string // the l4 protocol matched so far
	l3   Family // the network protocol, known in inet tables after meta nfproto
	fam  Family
}

// describeExprs renders exprs of a rule in family fam.
func describeExprs(fam Family, exprs []expr.Any, udata []byte) described {
	w := &describer{regs: map[uint32]regVal{}, l3: fam, fam: fam}
	if c, ok := ruleComment(udata); ok {
		w.d.comment = c
	}
	for _, e := range exprs {
		w.expr(e)
	}
	return w.d
}

// ruleComment returns the comment in a rule's user data (type-length-value
// records, as nft writes them). It is userdata.GetString with the bounds
// checked: google/nftables v0.3.0 slices a record before checking that its
// length fits, and panics on user data that any other writer may have set.
func ruleComment(udata []byte) (string, bool) {
	for len(udata) >= 2 {
		typ, n := userdata.Type(udata[0]), int(udata[1])
		if len(udata) < 2+n {
			return "", false
		}
		if typ == userdata.TypeComment {
			c, _ := strings.CutSuffix(string(udata[2:2+n]), "\x00")
			return c, true
		}
		udata = udata[2+n:]
	}
	return "", false
}

func (w *describer) expr(e expr.Any) {
	switch e := e.(type) {
	case *expr.Meta:
		w.meta(e)
	case *expr.Payload:
		if e.OperationType != expr.PayloadLoad {
			w.d.stmts = append(w.d.stmts, "payload write")
			return
		}
		w.regs[e.DestRegister] = payloadVal(w.l3, e, w.l4)
	case *expr.Bitwise:
		v := w.regs[e.SourceRegister]
		if v.kind == "addr" {
			v.bits = maskBits(e.Mask)
		} else {
			v.desc = fmt.Sprintf("%s & 0x%x", v.desc, e.Mask)
		}
		w.regs[e.DestRegister] = v
	case *expr.Cmp:
		w.cmp(e)
	case *expr.Range:
		v := w.regs[e.Register]
		w.d.match = append(w.d.match, fmt.Sprintf("%s %s%s-%s", v.desc, neq(e.Op == expr.CmpOpNeq), formatData(v, e.FromData), formatData(v, e.ToData)))
	case *expr.Lookup:
		v := w.regs[e.SourceRegister]
		w.d.match = append(w.d.match, fmt.Sprintf("%s %s@%s", v.desc, neq(e.Invert), e.SetName))
	case *expr.Ct:
		w.regs[e.Register] = regVal{desc: fmt.Sprintf("ct key%d", e.Key), kind: "hex", bits: -1}
	case *expr.Immediate:
		w.regs[e.Register] = regVal{kind: "imm", data: e.Data, bits: -1}
	case *expr.Counter:
	case *expr.Notrack:
		w.d.stmts = append(w.d.stmts, "notrack")
	case *expr.Verdict:
		w.verdict(e)
	case *expr.Masq:
		m := natrule.Mode{Action: natrule.Masquerade, Random: e.Random, FullyRandom: e.FullyRandom, Persistent: e.Persistent}
		if e.ToPorts {
			m.PortMin, m.PortMax = regPorts(w.regs, e.RegProtoMin, e.RegProtoMax)
		}
		w.d.nat, w.d.natText = &m, m.String()
	case *expr.NAT:
		w.nat(e)
	case *expr.Target:
		w.target(e)
	case *expr.Match:
		if c, ok := e.Info.(*xt.Comment); ok {
			w.d.comment = string(*c)
			return
		}
		w.d.match = append(w.d.match, "xt match "+e.Name)
	default:
		w.d.match = append(w.d.match, strings.TrimPrefix(fmt.Sprintf("%T", e), "*expr."))
	}
}

func (w *describer) meta(e *expr.Meta) {
	if e.SourceRegister {
		w.d.stmts = append(w.d.stmts, metaName(e.Key)+" set "+w.regs[e.Register].desc)
		return
	}
	v := regVal{desc: metaName(e.Key), bits: -1}
	switch e.Key {
	case expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME:
		v.kind = "ifname"
	case expr.MetaKeyL4PROTO:
		v.kind = "proto"
	case expr.MetaKeyNFPROTO:
		v.kind = "nfproto"
	case expr.MetaKeyMARK:
		v.kind = "hex"
	}
	w.regs[e.Register] = v
}

func (w *describer) cmp(e *expr.Cmp) {
	v := w.regs[e.Register]
	val := formatData(v, e.Data)
	if v.kind == "proto" && v.desc == "meta l4proto" && e.Op == expr.CmpOpEq {
		w.l4 = val
	}
	if v.kind == "nfproto" && e.Op == expr.CmpOpEq && len(e.Data) == 1 {
		// nft hides this dependency of "ip saddr" in inet tables.
		w.l3 = map[byte]Family{unix.NFPROTO_IPV4: natrule.IPv4, unix.NFPROTO_IPV6: natrule.IPv6}[e.Data[0]]
		return
	}
	w.d.match = append(w.d.match, joinNonEmpty(v.desc, cmpOp(e.Op), val))
}

func (w *describer) verdict(e *expr.Verdict) {
	switch e.Kind {
	case expr.VerdictJump:
		w.d.jumps = append(w.d.jumps, e.Chain)
		w.d.stmts = append(w.d.stmts, "jump "+e.Chain)
	case expr.VerdictGoto:
		w.d.jumps = append(w.d.jumps, e.Chain)
		w.d.stmts = append(w.d.stmts, "goto "+e.Chain)
	case expr.VerdictAccept:
		w.d.stmts = append(w.d.stmts, "accept")
	case expr.VerdictDrop:
		w.d.stmts = append(w.d.stmts, "drop")
	case expr.VerdictReturn:
		w.d.stmts = append(w.d.stmts, "return")
	}
}

func (w *describer) nat(e *expr.NAT) {
	if e.Type != expr.NATTypeSourceNAT {
		w.d.stmts = append(w.d.stmts, dnatText(w.regs, e))
		return
	}
	m := natrule.Mode{Action: natrule.SNAT, Random: e.Random, FullyRandom: e.FullyRandom, Persistent: e.Persistent}
	if e.RegAddrMin != 0 {
		lo, okLo := regAddr(w.regs[e.RegAddrMin])
		hi, okHi := lo, okLo
		if e.RegAddrMax != 0 {
			hi, okHi = regAddr(w.regs[e.RegAddrMax])
		}
		if okLo && okHi {
			m.AddrMin, m.AddrMax = lo, hi
		} else {
			w.d.warn = "snat addresses come from a map or expression"
		}
	}
	if e.RegProtoMin != 0 {
		m.PortMin, m.PortMax = regPorts(w.regs, e.RegProtoMin, e.RegProtoMax)
	}
	w.d.nat, w.d.natText = &m, m.String()
}

// dnatText renders a destination NAT statement as nft does ("dnat to
// 10.244.0.5:53"), or just "dnat" when its address comes from a map.
func dnatText(regs map[uint32]regVal, e *expr.NAT) string {
	a, ok := regAddr(regs[e.RegAddrMin])
	if e.RegAddrMin == 0 || !ok {
		return "dnat"
	}
	to := a.String()
	if a.Is6() {
		to = "[" + to + "]"
	}
	if e.RegProtoMin != 0 {
		if lo, hi := regPorts(regs, e.RegProtoMin, e.RegProtoMax); hi != lo {
			to = fmt.Sprintf("%s:%d-%d", to, lo, hi)
		} else {
			to = fmt.Sprintf("%s:%d", to, lo)
		}
	}
	return "dnat to " + to
}

func (w *describer) target(e *expr.Target) {
	switch e.Name {
	case "MASQUERADE", "SNAT":
		m, err := xtNAT(e, w.fam)
		if err != nil {
			w.d.warn = err.Error()
		}
		w.d.nat, w.d.xt = &m, true
		w.d.natText = "xt target " + e.Name + " (" + m.String() + ")"
	default:
		w.d.stmts = append(w.d.stmts, "xt target "+e.Name)
	}
}

func joinNonEmpty(parts ...string) string {
	out := parts[:0:0]
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, " ")
}

func neq(b bool) string {
	if b {
		return "!= "
	}
	return ""
}

func cmpOp(op expr.CmpOp) string {
	switch op {
	case expr.CmpOpEq:
		return ""
	case expr.CmpOpNeq:
		return "!="
	case expr.CmpOpLt:
		return "<"
	case expr.CmpOpLte:
		return "<="
	case expr.CmpOpGt:
		return ">"
	case expr.CmpOpGte:
		return ">="
	}
	return "?"
}

func metaName(k expr.MetaKey) string {
	switch k {
	case expr.MetaKeyIIFNAME:
		return "iifname"
	case expr.MetaKeyOIFNAME:
		return "oifname"
	case expr.MetaKeyIIF:
		return "iif"
	case expr.MetaKeyOIF:
		return "oif"
	case expr.MetaKeyL4PROTO:
		return "meta l4proto"
	case expr.MetaKeyNFPROTO:
		return "meta nfproto"
	case expr.MetaKeyMARK:
		return "meta mark"
	case expr.MetaKeySKUID:
		return "meta skuid"
	}
	return fmt.Sprintf("meta key%d", k)
}

// payloadVal names a payload load: ip saddr/daddr, ip6 saddr/daddr, ports.
func payloadVal(fam Family, p *expr.Payload, l4 string) regVal {
	v := regVal{bits: -1, desc: fmt.Sprintf("@%d,%d,%d", p.Base, p.Offset*8, p.Len*8)}
	switch p.Base {
	case expr.PayloadBaseNetworkHeader:
		v4 := fam != "ip6"
		switch {
		case v4 && p.Offset == 12 && p.Len <= 4:
			v.desc, v.kind = "ip saddr", "addr"
		case v4 && p.Offset == 16 && p.Len <= 4:
			v.desc, v.kind = "ip daddr", "addr"
		case v4 && p.Offset == 9 && p.Len == 1:
			v.desc, v.kind = "ip protocol", "proto"
		case !v4 && p.Offset == 8 && p.Len <= 16:
			v.desc, v.kind = "ip6 saddr", "addr"
		case !v4 && p.Offset == 24 && p.Len <= 16:
			v.desc, v.kind = "ip6 daddr", "addr"
		}
		if v.kind == "addr" {
			v.bits = int(p.Len) * 8
		}
	case expr.PayloadBaseTransportHeader:
		proto := l4
		if proto == "" {
			proto = "th"
		}
		switch {
		case p.Offset == 0 && p.Len == 2:
			v.desc, v.kind = proto+" sport", "port"
		case p.Offset == 2 && p.Len == 2:
			v.desc, v.kind = proto+" dport", "port"
		}
	}
	return v
}

func maskBits(mask []byte) int {
	n := 0
	for _, b := range mask {
		for i := 7; i >= 0; i-- {
			if b&(1<<i) == 0 {
				return n
			}
			n++
		}
	}
	return n
}

var protoNames = map[byte]string{unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp", unix.IPPROTO_SCTP: "sctp", unix.IPPROTO_ICMP: "icmp", unix.IPPROTO_ICMPV6: "ipv6-icmp", unix.IPPROTO_DCCP: "dccp"}

// formatData prints cmp data the way nft does for the register's kind.
func formatData(v regVal, b []byte) string {
	switch v.kind {
	case "ifname":
		return fmt.Sprintf("%q", strings.TrimRight(string(b), "\x00"))
	case "proto":
		if len(b) == 1 {
			if n, ok := protoNames[b[0]]; ok {
				return n
			}
		}
	case "port":
		if len(b) == 2 {
			return fmt.Sprint(binary.BigEndian.Uint16(b))
		}
	case "addr":
		full := b
		size := 4
		if len(b) > 4 || strings.HasPrefix(v.desc, "ip6") {
			size = 16
		}
		if len(full) < size {
			full = append(append([]byte(nil), b...), make([]byte, size-len(b))...)
		}
		a, ok := netip.AddrFromSlice(full[:size])
		if !ok {
			break
		}
		if v.bits >= 0 && v.bits < size*8 {
			return fmt.Sprintf("%s/%d", a, v.bits)
		}
		return a.String()
	}
	return fmt.Sprintf("0x%x", b)
}

// regAddr reads an address loaded by an immediate.
func regAddr(v regVal) (netip.Addr, bool) {
	if v.kind != "imm" {
		return netip.Addr{}, false
	}
	switch len(v.data) {
	case 4, 16:
		a, ok := netip.AddrFromSlice(v.data)
		return a, ok
	}
	return netip.Addr{}, false
}

// regPorts reads a port range loaded by immediates (network byte order).
func regPorts(regs map[uint32]regVal, lo, hi uint32) (uint16, uint16) {
	port := func(r uint32) uint16 {
		v := regs[r]
		if v.kind == "imm" && len(v.data) >= 2 {
			return binary.BigEndian.Uint16(v.data[:2])
		}
		return 0
	}
	a := port(lo)
	b := a
	if hi != 0 {
		b = port(hi)
	}
	return a, b
}

// xtNAT decodes the range inside an iptables-nft MASQUERADE or SNAT target:
// nf_nat_ipv4_multi_range_compat (IPv4 revision 0) or nf_nat_range /
// nf_nat_range2 (revisions 1, 2 and IPv6), whose flags carry random,
// fully-random and persistent.
func xtNAT(t *expr.Target, fam Family) (natrule.Mode, error) {
	m := natrule.Mode{Action: natrule.Masquerade}
	if t.Name == "SNAT" {
		m.Action = natrule.SNAT
	}
	var (
		flags            uint32
		minIP, maxIP     net.IP
		minPort, maxPort uint16
	)
	switch info := t.Info.(type) {
	case *xt.NatIPv4MultiRangeCompat:
		if len(*info) == 0 {
			return m, fmt.Errorf("xt %s: empty range", t.Name)
		}
		r := (*info)[0]
		flags, minIP, maxIP, minPort, maxPort = uint32(r.Flags), r.MinIP, r.MaxIP, r.MinPort, r.MaxPort
	case *xt.NatRange:
		flags, minIP, maxIP, minPort, maxPort = uint32(info.Flags), info.MinIP, info.MaxIP, info.MinPort, info.MaxPort
	case *xt.NatRange2:
		flags, minIP, maxIP, minPort, maxPort = uint32(info.Flags), info.MinIP, info.MaxIP, info.MinPort, info.MaxPort
	case *xt.Unknown:
		fnum, _ := nftnl.FamilyNumber(string(fam))
		r, err := nftnl.DecodeXTNATRange(*info, fnum, t.Rev)
		if err != nil {
			return m, fmt.Errorf("xt %s: %w", t.Name, err)
		}
		flags, minIP, maxIP, minPort, maxPort = r.Flags, r.MinIP, r.MaxIP, r.MinPort, r.MaxPort
	default:
		return m, fmt.Errorf("xt %s: unexpected info %T", t.Name, t.Info)
	}
	f := natmodel.Flags(flags)
	m.SetFlags(f)
	if f&natmodel.ProtoSpecified != 0 {
		m.PortMin, m.PortMax = minPort, maxPort
	}
	if m.Action == natrule.SNAT && f&natmodel.MapIPs != 0 {
		v4 := fam == natrule.IPv4
		lo, okLo := ipAddr(minIP, v4)
		hi, okHi := ipAddr(maxIP, v4)
		if okLo && okHi {
			m.AddrMin, m.AddrMax = lo, hi
		}
	}
	return m, nil
}

func ipAddr(ip net.IP, v4 bool) (netip.Addr, bool) {
	if v4 {
		if ip4 := ip.To4(); ip4 != nil {
			return netip.AddrFrom4([4]byte(ip4)), true
		}
		if len(ip) >= 4 {
			return netip.AddrFrom4([4]byte(ip[:4])), true
		}
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(ip)
	return a, ok
}
