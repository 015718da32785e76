package natrule

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Rule is one source-NAT rule: connections from Src leaving through OutIface
// get Mode. The lab's node installs one per uplink.
type Rule struct {
	Src      netip.Prefix // match on source address; invalid = any
	OutIface string       // match on output interface; "" = any
	Proto    string       // "tcp", "udp" or "" for any; a port range needs one
	Mode     Mode
}

// Table and chain snatrace owns in a namespace. Nothing else is touched.
const (
	TableName = "snatrace"
	ChainName = "postrouting"
)

// ErrUnsupported is returned for a mode a backend cannot express.
var ErrUnsupported = errors.New("not supported by this backend")

// IptablesArgs renders r as iptables rule-spec arguments for the nat table's
// POSTROUTING chain, without the leading "-A POSTROUTING".
func (r Rule) IptablesArgs() ([]string, error) {
	var a []string
	if r.Src.IsValid() {
		a = append(a, "-s", r.Src.String())
	}
	if r.OutIface != "" {
		a = append(a, "-o", r.OutIface)
	}
	if r.Proto != "" {
		a = append(a, "-p", r.Proto)
	}
	m := r.Mode
	switch m.Action {
	case None:
		return nil, nil
	case Masquerade:
		a = append(a, "-j", "MASQUERADE")
		if m.HasPorts() {
			a = append(a, "--to-ports", iptPorts(m.PortMin, m.PortMax))
		}
		if m.Persistent {
			return nil, fmt.Errorf("%q: iptables MASQUERADE has no --persistent: %w", m, ErrUnsupported)
		}
	case SNAT:
		to := m.AddrMin.String()
		if m.AddrMax != m.AddrMin {
			to += "-" + m.AddrMax.String()
		}
		if m.AddrMin.Is6() {
			return nil, fmt.Errorf("%q: the iptables backends here program IPv4 only: %w", m, ErrUnsupported)
		}
		if m.HasPorts() {
			to += ":" + iptPorts(m.PortMin, m.PortMax)
		}
		a = append(a, "-j", "SNAT", "--to-source", to)
	default:
		return nil, fmt.Errorf("unknown action %v", m.Action)
	}
	if m.Random {
		a = append(a, "--random")
	}
	if m.FullyRandom {
		a = append(a, "--random-fully")
	}
	if m.Persistent { // SNAT only: MASQUERADE refused it above
		a = append(a, "--persistent")
	}
	return a, nil
}

func iptPorts(lo, hi uint16) string {
	if lo == hi {
		return fmt.Sprint(lo)
	}
	return fmt.Sprintf("%d-%d", lo, hi)
}

// IptablesRestore renders rules as an iptables-restore document that replaces
// the whole nat table: the lab's node namespace holds nothing else.
func IptablesRestore(rules []Rule) (string, error) {
	var b strings.Builder
	b.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n")
	for _, r := range rules {
		args, err := r.IptablesArgs()
		if err != nil {
			return "", err
		}
		if args == nil {
			continue
		}
		b.WriteString("-A POSTROUTING " + strings.Join(args, " ") + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String(), nil
}

// NFTStatement renders r as an nft rule statement, e.g.
// `ip saddr 10.98.0.0/16 oifname "up0" meta l4proto tcp masquerade fully-random`.
func (r Rule) NFTStatement() (string, error) {
	var parts []string
	if r.Src.IsValid() {
		if !r.Src.Addr().Is4() {
			return "", fmt.Errorf("source %s: table ip takes IPv4 only: %w", r.Src, ErrUnsupported)
		}
		parts = append(parts, "ip saddr "+r.Src.Masked().String())
	}
	if r.OutIface != "" {
		parts = append(parts, fmt.Sprintf("oifname %q", r.OutIface))
	}
	if r.Proto != "" {
		parts = append(parts, "meta l4proto "+r.Proto)
	} else if r.Mode.HasPorts() {
		return "", fmt.Errorf("%q: a port range needs a protocol match: %w", r.Mode, ErrUnsupported)
	}
	if r.Mode.Action == SNAT && !r.Mode.AddrMin.Is4() {
		return "", fmt.Errorf("%q: table ip takes IPv4 only: %w", r.Mode, ErrUnsupported)
	}
	parts = append(parts, r.Mode.String())
	return strings.Join(parts, " "), nil
}

// NFTScript renders rules as an `nft -f` script that replaces table
// ip snatrace atomically (one transaction whether or not it exists).
func NFTScript(rules []Rule) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s\ndelete table ip %s\ntable ip %s {\n\tchain %s {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n", TableName, TableName, TableName, ChainName)
	for _, r := range rules {
		if r.Mode.Action == None {
			continue
		}
		st, err := r.NFTStatement()
		if err != nil {
			return "", err
		}
		b.WriteString("\t\t" + st + "\n")
	}
	b.WriteString("\t}\n}\n")
	return b.String(), nil
}
