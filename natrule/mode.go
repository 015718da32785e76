// Package natrule describes a source-NAT rule in nftables statement syntax and
// installs it in a network namespace through one of three backends: nftables over
// netlink, iptables-nft or iptables-legacy (through iptables-restore).
//
// The same Mode drives the lab, the simulator and fix, so a NAT mode reads the same
// everywhere: "masquerade", "masquerade fully-random", "masquerade to :1024-1100",
// "snat to 192.0.2.1-192.0.2.4:2000-2100 random,persistent", "none".
package natrule

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/snatrace/snatrace/natmodel"
)

// Action is what a rule does to the source of a new connection.
type Action int

const (
	None       Action = iota // no source NAT at all
	Masquerade               // SNAT to the address of the outgoing interface
	SNAT                     // SNAT to a given address range
)

func (a Action) String() string {
	switch a {
	case None:
		return "none"
	case Masquerade:
		return "masquerade"
	case SNAT:
		return "snat"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Mode is one source-NAT statement. The zero value is "none".
type Mode struct {
	Action Action
	// AddrMin and AddrMax bound the SNAT address range; both are the zero Addr
	// for masquerade and none.
	AddrMin, AddrMax netip.Addr
	// PortMin and PortMax bound the source port range; both 0 when the rule
	// gives no ports (the kernel then keeps the port class, see KERNEL.md §2).
	PortMin, PortMax uint16
	// Random, FullyRandom and Persistent are the statement's flags.
	Random, FullyRandom, Persistent bool
}

// HasPorts reports whether the mode restricts the source port range.
func (m Mode) HasPorts() bool { return m.PortMin != 0 || m.PortMax != 0 }

// Flags returns the uapi NF_NAT_RANGE_* flags the rule carries
// (NFTA_NAT_FLAGS, NFTA_MASQ_FLAGS, or the xt target's range flags).
// Masquerade carries no address, so no MAP_IPS: its target adds MAP_IPS
// itself, per packet, with the outgoing interface's address.
func (m Mode) Flags() natmodel.Flags {
	var f natmodel.Flags
	if m.Action == SNAT && m.AddrMin.IsValid() {
		f |= natmodel.MapIPs
	}
	if m.HasPorts() {
		f |= natmodel.ProtoSpecified
	}
	if m.Random {
		f |= natmodel.ProtoRandom
	}
	if m.Persistent {
		f |= natmodel.Persistent
	}
	if m.FullyRandom {
		f |= natmodel.ProtoRandomFully
	}
	return f
}

// SetFlags sets the statement flags (random, fully-random, persistent) from
// uapi range flags, as a kernel object carries them.
func (m *Mode) SetFlags(f natmodel.Flags) {
	m.Random = f&natmodel.ProtoRandom != 0
	m.FullyRandom = f&natmodel.ProtoRandomFully != 0
	m.Persistent = f&natmodel.Persistent != 0
}

// SetFlag sets the statement flag named by word ("random", "fully-random",
// "persistent") and reports whether word is one. Every reader of rules
// (nft statements, nft JSON, this package's parser) names flags through it.
func (m *Mode) SetFlag(word string) bool {
	switch word {
	case "random":
		m.Random = true
	case "fully-random":
		m.FullyRandom = true
	case "persistent":
		m.Persistent = true
	default:
		return false
	}
	return true
}

// Range returns the nf_nat_range2 the kernel builds for m when the packet
// leaves by an interface whose address is masq (used by masquerade only), or
// nil for none.
func (m Mode) Range(masq netip.Addr) (*natmodel.Range, error) {
	var r natmodel.Range
	switch m.Action {
	case None:
		return nil, nil
	case Masquerade:
		r = natmodel.Masquerade(masq, m.Flags(), m.PortMin, m.PortMax)
	case SNAT:
		r = natmodel.Range{Flags: m.Flags(), MinAddr: m.AddrMin, MaxAddr: m.AddrMax, MinPort: m.PortMin, MaxPort: m.PortMax}
	default:
		return nil, fmt.Errorf("unknown NAT action %v", m.Action)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// DefaultModes are the modes the lab and the simulator compare when none is
// given: the race and its fix.
func DefaultModes() []Mode {
	return []Mode{{Action: Masquerade}, {Action: Masquerade, FullyRandom: true}}
}

// Randomness names how the source port is chosen: "none" (port preservation
// first), "random" or "fully-random". fully-random wins when both are set,
// as it does in the kernel.
func (m Mode) Randomness() string {
	switch {
	case m.FullyRandom:
		return "fully-random"
	case m.Random:
		return "random"
	}
	return "none"
}

// String returns the canonical nft statement for m; ParseMode(m.String()) == m.
func (m Mode) String() string {
	var b strings.Builder
	switch m.Action {
	case None:
		return "none"
	case Masquerade:
		b.WriteString("masquerade")
		if m.HasPorts() {
			b.WriteString(" to :")
			b.WriteString(portRange(m.PortMin, m.PortMax))
		}
	case SNAT:
		b.WriteString("snat to ")
		b.WriteString(addrString(m.AddrMin, m.HasPorts()))
		if m.AddrMax != m.AddrMin {
			b.WriteString("-")
			b.WriteString(addrString(m.AddrMax, m.HasPorts()))
		}
		if m.HasPorts() {
			b.WriteString(":")
			b.WriteString(portRange(m.PortMin, m.PortMax))
		}
	default:
		return m.Action.String()
	}
	var flags []string
	if m.Random {
		flags = append(flags, "random")
	}
	if m.FullyRandom {
		flags = append(flags, "fully-random")
	}
	if m.Persistent {
		flags = append(flags, "persistent")
	}
	if len(flags) > 0 {
		b.WriteString(" ")
		b.WriteString(strings.Join(flags, ","))
	}
	return b.String()
}

func addrString(a netip.Addr, withPort bool) string {
	if a.Is6() && withPort {
		return "[" + a.String() + "]"
	}
	return a.String()
}

func portRange(lo, hi uint16) string {
	if lo == hi {
		return strconv.Itoa(int(lo))
	}
	return strconv.Itoa(int(lo)) + "-" + strconv.Itoa(int(hi))
}

// ParseError reports a mode that is not valid nft statement syntax.
type ParseError struct {
	Input string // the whole statement
	Msg   string // what is wrong
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("invalid NAT mode %q: %s", e.Input, e.Msg)
}

// ParseMode parses a NAT statement in nftables syntax:
//
//	none
//	masquerade [to :PORT[-PORT]] [FLAGS]
//	snat [ip|ip6] to ADDR[-ADDR][:PORT[-PORT]] [FLAGS]
//
// FLAGS is a comma-joined (or space-separated) list of random, fully-random and
// persistent. Errors are *ParseError and name the offending part.
func ParseMode(s string) (Mode, error) {
	fail := func(format string, a ...any) (Mode, error) {
		return Mode{}, &ParseError{Input: s, Msg: fmt.Sprintf(format, a...)}
	}
	words := strings.Fields(s)
	if len(words) == 0 {
		return fail("empty")
	}
	var m Mode
	rest := words[1:]
	switch strings.ToLower(words[0]) {
	case "none":
		if len(rest) > 0 {
			return fail("unexpected %q after none", rest[0])
		}
		return m, nil
	case "masquerade":
		m.Action = Masquerade
		if len(rest) > 0 && rest[0] == "to" {
			if len(rest) < 2 {
				return fail("missing port range after \"to\"")
			}
			spec := rest[1]
			if !strings.HasPrefix(spec, ":") {
				return fail("masquerade takes only ports: want \"to :PORT[-PORT]\", got %q", spec)
			}
			lo, hi, err := parsePorts(spec[1:])
			if err != nil {
				return fail("%v", err)
			}
			m.PortMin, m.PortMax = lo, hi
			rest = rest[2:]
		}
	case "snat":
		m.Action = SNAT
		if len(rest) > 0 && (rest[0] == "ip" || rest[0] == "ip6") {
			rest = rest[1:]
		}
		if len(rest) < 2 || rest[0] != "to" {
			return fail("want \"snat to ADDR[-ADDR][:PORT[-PORT]]\"")
		}
		if err := m.parseSNATTarget(rest[1]); err != nil {
			return fail("%v", err)
		}
		rest = rest[2:]
	default:
		return fail("unknown action %q: want none, masquerade or snat", words[0])
	}
	for _, w := range rest {
		for _, f := range strings.Split(w, ",") {
			switch {
			case f == "":
				return fail("empty flag in %q", w)
			case !m.SetFlag(f):
				return fail("unknown flag %q: want random, fully-random or persistent", f)
			}
		}
	}
	return m, nil
}

// parseSNATTarget parses ADDR[-ADDR][:PORT[-PORT]], with IPv6 addresses in
// brackets when ports follow.
func (m *Mode) parseSNATTarget(spec string) error {
	addrs, ports := spec, ""
	if strings.HasPrefix(spec, "[") {
		// [v6]:ports or [v6]-[v6]:ports
		i := strings.LastIndex(spec, "]")
		if i < 0 {
			return errors.New("unclosed '[' in address")
		}
		addrs = spec[:i+1]
		if rest := spec[i+1:]; rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return fmt.Errorf("unexpected %q after address", rest)
			}
			ports = rest[1:]
		}
		addrs = strings.NewReplacer("[", "", "]", "").Replace(addrs)
	} else if strings.Count(spec, ":") == 1 {
		i := strings.Index(spec, ":")
		addrs, ports = spec[:i], spec[i+1:]
	}
	lo, hi, found := strings.Cut(addrs, "-")
	if !found && strings.Contains(lo, "/") {
		// nft lists "snat to 10.0.0.0/30" for the range the prefix covers.
		p, err := netip.ParsePrefix(lo)
		if err != nil {
			return fmt.Errorf("bad address prefix %q: %w", lo, err)
		}
		m.AddrMin, m.AddrMax = PrefixRange(p)
		if ports != "" {
			if m.PortMin, m.PortMax, err = parsePorts(ports); err != nil {
				return err
			}
		}
		return nil
	}
	min, err := netip.ParseAddr(lo)
	if err != nil {
		return fmt.Errorf("bad address %q: %w", lo, err)
	}
	max := min
	if found {
		if max, err = netip.ParseAddr(hi); err != nil {
			return fmt.Errorf("bad address %q: %w", hi, err)
		}
		if min.Is4() != max.Is4() {
			return fmt.Errorf("address range %s mixes families", addrs)
		}
		if max.Less(min) {
			return fmt.Errorf("address range %s: first address is above the last", addrs)
		}
	}
	m.AddrMin, m.AddrMax = min, max
	if ports != "" {
		if m.PortMin, m.PortMax, err = parsePorts(ports); err != nil {
			return err
		}
	}
	return nil
}

// PrefixRange returns the first and last address of p: the range nft makes
// of "snat to ADDR/LEN".
func PrefixRange(p netip.Prefix) (first, last netip.Addr) {
	p = p.Masked()
	b := p.Addr().As16()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	for i := bits; i < 128; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	last = netip.AddrFrom16(b)
	if p.Addr().Is4() {
		last = last.Unmap()
	}
	return p.Addr(), last
}

// ParsePortRange parses a source port range as rules write it: "PORT" or
// "LOW-HIGH" (iptables also takes "LOW:HIGH"), each port 1-65535, LOW <= HIGH.
func ParsePortRange(s string) (lo, hi uint16, err error) { return parsePorts(s) }

func parsePorts(s string) (uint16, uint16, error) {
	lo, hi, found := strings.Cut(s, "-")
	if !found {
		lo, hi, found = strings.Cut(s, ":")
	}
	min, err := parsePort(lo)
	if err != nil {
		return 0, 0, err
	}
	max := min
	if found {
		if max, err = parsePort(hi); err != nil {
			return 0, 0, err
		}
	}
	if min > max {
		return 0, 0, fmt.Errorf("port range %s: first port is above the last", s)
	}
	return min, max, nil
}

// ParsePort parses one port, 1-65535.
func ParsePort(s string) (uint16, error) { return parsePort(s) }

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 || s[0] == '+' {
		return 0, fmt.Errorf("bad port %q: want 1-65535", s)
	}
	return uint16(n), nil
}
