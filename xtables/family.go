package xtables

// Family is the address family of a table: iptables' IPv4 tables or
// ip6tables' IPv6 tables. Their entries differ only in the IP part at their
// head (struct ipt_ip, struct ip6t_ip6) and the offsets after it; matches,
// targets and the chain structure are the same.
type Family uint8

// The families.
const (
	IPv4 Family = iota
	IPv6
)

// String is "IPv4" or "IPv6".
func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// Tool is the family's iptables-legacy command, for messages.
func (f Family) Tool() string {
	if f == IPv6 {
		return "ip6tables-legacy"
	}
	return "iptables-legacy"
}

// GetEntries names the socket option a family's table is read with
// (IPT_SO_GET_ENTRIES, IP6T_SO_GET_ENTRIES): where a rule read through the
// kernel interface came from.
func (f Family) GetEntries() string { return f.layout().opt + "_SO_GET_ENTRIES" }

// layout is where a family's entries keep their parts, as the 64-bit
// kernel lays them out for userspace (linux/netfilter_ipv4/ip_tables.h,
// linux/netfilter_ipv6/ip6_tables.h).
type layout struct {
	entrySize int // struct ipt_entry, ip6t_entry
	ipSize    int // struct ipt_ip, ip6t_ip6
	targetOff int // offset of .target_offset (u16)
	nextOff   int // offset of .next_offset (u16)
	counters  int // offset of .counters (two u64)
	flags     int // offset of the IP part's .flags
	gotoFlag  byte
	opt       string // the socket options' prefix, for messages
}

var layouts = [2]layout{
	IPv4: {entrySize: 112, ipSize: 84, targetOff: 88, nextOff: 90, counters: 96, flags: 82, gotoFlag: 0x02, opt: "IPT"},       // IPT_F_GOTO
	IPv6: {entrySize: 168, ipSize: 136, targetOff: 140, nextOff: 142, counters: 152, flags: 131, gotoFlag: 0x04, opt: "IP6T"}, // IP6T_F_GOTO
}

// layout returns f's layout; an unknown family is IPv4's.
func (f Family) layout() *layout {
	if f == IPv6 {
		return &layouts[IPv6]
	}
	return &layouts[IPv4]
}
