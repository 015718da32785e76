package ruleset

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/snatrace/snatrace/natrule"
)

// FormatIptablesList is the listing `iptables -t nat -L -n` prints, with or
// without -v, -x and --line-numbers: what people paste most.
const FormatIptablesList Format = "iptables-L"

// listChain is one "Chain NAME (...)" block of a listing.
type listChain struct {
	name, policy string // policy "-" for a user chain
	line         int
	rules        []listRule
}

type listRule struct {
	words []string // iptables-save words after "-A CHAIN"
	line  int
}

// listColumns is a listing's layout, from its header line.
type listColumns struct {
	num, counters, interfaces bool
}

var (
	listChainLine = regexp.MustCompile(`^Chain (\S+) \((?:policy (\S+)[^)]*|\d+ references?)\)$`)
	listProtos    = map[string]string{"0": "", "all": "", "1": "icmp", "6": "tcp", "17": "udp", "58": "ipv6-icmp", "132": "sctp", "33": "dccp", "136": "udplite"}
)

// ParseIptablesListing reads `iptables -t nat -L -n [-v] [-x]
// [--line-numbers]` output (ip6tables too) by turning each rule back into
// its iptables-save form, so that it is read, judged and attributed as a
// dump would be. A listing does not say which table or iptables flavour it
// came from: the table must be nat (a filter listing is refused, naming the
// command to run) and the backend is natrule.Iptables. Matches the listing
// prints in a form snatrace does not translate are kept, as
// `-m listing --text "..."`, in the rule's match.
func ParseIptablesListing(data, name string) (*Ruleset, error) {
	chains, fam, cols, err := scanListing(data, name)
	if err != nil {
		return nil, err
	}
	if err := checkNatListing(chains, name); err != nil {
		return nil, err
	}
	p := &iptParser{name: name, rs: &Ruleset{}, backend: natrule.Iptables, family: fam, source: -1, chainHint: len(chains) + 8}
	p.startSource(string(FormatIptablesList))
	p.table = "nat"
	for _, c := range chains {
		p.addChain(c.name, c.policy)
	}
	for _, c := range chains {
		for _, r := range c.rules {
			line := "-A " + c.name + " " + strings.Join(quoteAll(r.words), " ")
			if err := p.rule(line, line, r.line); err != nil {
				return nil, err
			}
		}
	}
	p.rs.resolveHooks()
	if !cols.interfaces && len(p.rs.Rules) > 0 {
		p.rs.Warnings = append(p.rs.Warnings, name+": a listing without -v shows no interfaces: owners recognised by them (Docker's ! -o docker0) may show as unknown; list with iptables -t nat -L -n -v")
	}
	return p.rs, nil
}

// scanListing cuts a listing into chains and rules, and returns the layout
// of its last header.
func scanListing(data, name string) ([]*listChain, Family, listColumns, error) {
	var chains []*listChain
	var cur *listChain
	var cols listColumns
	fam := natrule.IPv4
	for n, line := range strings.Split(data, "\n") {
		n++
		t := strings.TrimSpace(strings.TrimRight(line, "\r"))
		switch {
		case t == "" || strings.HasPrefix(t, "#"):
		case strings.HasPrefix(t, "Chain "):
			m := listChainLine.FindStringSubmatch(t)
			if m == nil {
				return nil, fam, cols, &ParseError{File: name, Line: n, Msg: fmt.Sprintf("bad chain line %q: want \"Chain NAME (policy P ...)\" or \"Chain NAME (N references)\"", clip(t))}
			}
			policy := m[2]
			if policy == "" {
				policy = "-"
			}
			cur = &listChain{name: m[1], policy: policy, line: n}
			chains = append(chains, cur)
		case cur == nil:
			return nil, fam, cols, &ParseError{File: name, Line: n, Msg: fmt.Sprintf("%q before the first \"Chain\" line", clip(t))}
		case isListHeader(t):
			cols = headerColumns(t)
		default:
			words, v6, err := listRuleWords(t, cols)
			if err != nil {
				return nil, fam, cols, &ParseError{File: name, Line: n, Msg: err.Error()}
			}
			if v6 {
				fam = natrule.IPv6
			}
			cur.rules = append(cur.rules, listRule{words: words, line: n})
		}
	}
	if len(chains) == 0 {
		return nil, fam, cols, &ParseError{File: name, Msg: "no \"Chain\" lines: not an iptables -L listing"}
	}
	return chains, fam, cols, nil
}

func isListHeader(t string) bool {
	f := strings.Fields(t)
	return len(f) > 0 && (f[0] == "pkts" || f[0] == "num" || f[0] == "target")
}

func headerColumns(t string) listColumns {
	f := strings.Fields(t)
	c := listColumns{}
	for _, w := range f {
		switch w {
		case "num":
			c.num = true
		case "pkts":
			c.counters = true
		case "in":
			c.interfaces = true
		}
	}
	return c
}

// checkNatListing refuses a listing of another table than nat: it holds no
// source NAT, and an audit of it would wrongly say "no racing rules".
func checkNatListing(chains []*listChain, name string) error {
	builtin := map[string]bool{}
	var names []string
	for _, c := range chains {
		if c.policy != "-" {
			builtin[c.name] = true
			names = append(names, c.name)
		}
	}
	if (builtin["PREROUTING"] || builtin["POSTROUTING"]) && !builtin["FORWARD"] {
		return nil
	}
	if len(builtin) == 0 { // one user chain listed alone: nothing says otherwise
		return nil
	}
	table := "filter"
	if builtin["FORWARD"] && builtin["POSTROUTING"] {
		table = "mangle"
	} else if builtin["PREROUTING"] {
		table = "raw"
	}
	return &ParseError{File: name, Msg: fmt.Sprintf("this is a listing of the %s table (chains %s), which holds no source NAT: list the nat table (iptables -t nat -L -n -v)", table, strings.Join(names, ", "))}
}

// listRuleWords turns one listing rule into iptables-save words.
func listRuleWords(line string, c listColumns) ([]string, bool, error) {
	line, comments := cutComments(line)
	f := strings.Fields(line)
	fixed := 4 // [target] prot opt source destination
	if c.interfaces {
		fixed += 2
	}
	skip := 0
	if c.num {
		skip++
	}
	if c.counters {
		skip += 2
	}
	if len(f) < skip+fixed {
		return nil, false, fmt.Errorf("a rule line needs at least %d columns, has %d (a listing cut in the middle?)", skip+fixed, len(f))
	}
	f = f[skip:]
	target := ""
	if !isListOpt(f[1]) { // f[0] is the target, f[1] the protocol
		target, f = f[0], f[1:]
		if len(f) < fixed {
			return nil, false, fmt.Errorf("a rule line needs at least %d columns after its target, has %d (a listing cut in the middle?)", fixed, len(f))
		}
	}
	proto, ok := listProtos[f[0]]
	if !ok {
		proto = f[0]
	}
	var w []string
	addrs := f[2:]
	if c.interfaces {
		w = append(w, listNeg("-i", f[2])...)
		w = append(w, listNeg("-o", f[3])...)
		addrs = f[4:]
	}
	src, dst, v6 := listAddr("-s", addrs[0]), listAddr("-d", addrs[1]), strings.Contains(addrs[0]+addrs[1], ":")
	w = append(append(src, dst...), w...)
	if proto != "" {
		w = append(w, "-p", proto)
	}
	matches, targetOpts := listExtras(addrs[2:], target, comments)
	w = append(w, matches...)
	if target != "" {
		w = append(append(w, "-j", target), targetOpts...)
	}
	return w, v6, nil
}

func isListOpt(s string) bool { return s == "--" || s == "-f" || s == "!f" }

// listNeg turns an interface column ("*", "eth0", "!docker0", "cali+")
// into its option.
func listNeg(opt, v string) []string {
	switch {
	case v == "*":
		return nil
	case strings.HasPrefix(v, "!"):
		return []string{"!", opt, v[1:]}
	}
	return []string{opt, v}
}

// listAddr turns an address column into its option: "0.0.0.0/0" is none,
// an address without a mask is a host (-n prints /32 and /128 without it).
func listAddr(opt, v string) []string {
	neg := strings.HasPrefix(v, "!")
	v = strings.TrimPrefix(v, "!")
	if v == "0.0.0.0/0" || v == "::/0" || v == "anywhere" { // "anywhere": listed without -n
		return nil
	}
	if !strings.Contains(v, "/") {
		if strings.Contains(v, ":") {
			v += "/128"
		} else {
			v += "/32"
		}
	}
	if neg {
		return []string{"!", opt, v}
	}
	return []string{opt, v}
}

func quoteAll(w []string) []string {
	out := make([]string, len(w))
	for i, s := range w {
		out[i] = quoteWord(s)
	}
	return out
}

// commentMark stands for the n-th comment of a line while it is split into
// words: a comment keeps its spaces.
const commentMark = "\x00comment"

// cutComments takes the "/* ... */" comments out of a listing line.
func cutComments(line string) (string, []string) {
	var comments []string
	for {
		i := strings.Index(line, "/* ")
		if i < 0 {
			return line, comments
		}
		j := strings.Index(line[i+3:], " */")
		if j < 0 {
			return line, comments
		}
		comments = append(comments, line[i+3:i+3+j])
		line = line[:i] + " " + commentMark + " " + line[i+3+j+3:]
	}
}

// listExtras translates what a listing prints after the addresses: the
// matches (comment, addrtype, mark, ports, sets, state) and the target's
// options (masq ports, to:, random, random-fully, persistent). What it does
// not know it keeps as one `-m listing --text` match.
func listExtras(f []string, target string, comments []string) (matches, targetOpts []string) {
	var raw []string
	for i := 0; i < len(f); i++ {
		neg := []string(nil)
		if f[i] == "!" && i+1 < len(f) {
			neg, i = []string{"!"}, i+1
		}
		n, m, t := listWord(f, i, target)
		switch {
		case f[i] == commentMark && len(comments) > 0:
			matches = append(matches, "-m", "comment", "--comment", comments[0])
			comments, n = comments[1:], 1
		case m != nil:
			matches = append(matches, spliceNeg(m, neg)...)
		case t != nil:
			targetOpts = append(targetOpts, t...)
		default:
			raw = append(append(raw, neg...), f[i])
			n = 1
		}
		i += n - 1
	}
	if len(raw) > 0 {
		matches = append(matches, "-m", "listing", "--text", strings.Join(raw, " "))
	}
	return matches, targetOpts
}

// spliceNeg puts a "!" before the match's option (after "-m NAME").
func spliceNeg(m, neg []string) []string {
	if neg == nil || len(m) < 3 {
		return m
	}
	return append(append(append([]string{}, m[:2]...), neg...), m[2:]...)
}

// listWord reads the match or target option that starts at f[i]: how many
// words it took, and its iptables-save words as a match or a target option.
func listWord(f []string, i int, target string) (int, []string, []string) {
	w, next := f[i], ""
	if i+1 < len(f) {
		next = f[i+1]
	}
	switch {
	case w == "ADDRTYPE" && next == "match":
		return listAddrtype(f, i)
	case w == "mark" && next == "match" && i+2 < len(f):
		if f[i+2] == "!" && i+3 < len(f) {
			return 4, []string{"-m", "mark", "!", "--mark", f[i+3]}, nil
		}
		return 3, []string{"-m", "mark", "--mark", f[i+2]}, nil
	case (w == "tcp" || w == "udp" || w == "sctp") && portWord.MatchString(next):
		return listPorts(f, i)
	case w == "multiport" && i+2 < len(f) && (next == "dports" || next == "sports" || next == "ports"):
		return 3, []string{"-m", "multiport", "--" + next, f[i+2]}, nil
	case w == "match-set" && i+2 < len(f):
		return 3, []string{"-m", "set", "--match-set", next, f[i+2]}, nil
	case (w == "ctstate" || w == "state") && next != "":
		return 2, []string{"-m", "conntrack", "--ctstate", next}, nil
	}
	return listTargetWord(f, i, target)
}

var portWord = regexp.MustCompile(`^(spt|dpt|spts|dpts):`)

func listAddrtype(f []string, i int) (int, []string, []string) {
	m := []string{"-m", "addrtype"}
	j := i + 2
	for ; j+1 < len(f) && (f[j] == "src-type" || f[j] == "dst-type"); j += 2 {
		v := f[j+1]
		if strings.HasPrefix(v, "!") {
			m = append(m, "!")
			v = v[1:]
		}
		m = append(m, "--"+f[j], v)
	}
	return j - i, m, nil
}

func listPorts(f []string, i int) (int, []string, []string) {
	m := []string{"-m", f[i]}
	j := i + 1
	for ; j < len(f) && portWord.MatchString(f[j]); j++ {
		k, v, _ := strings.Cut(f[j], ":")
		opt := map[string]string{"spt": "--sport", "spts": "--sport", "dpt": "--dport", "dpts": "--dport"}[k]
		if strings.HasPrefix(v, "!") {
			m = append(m, "!")
			v = v[1:]
		}
		m = append(m, opt, v)
	}
	return j - i, m, nil
}

// listTargetWord reads a NAT target's option as the listing prints it.
func listTargetWord(f []string, i int, target string) (int, []string, []string) {
	w := f[i]
	switch {
	case w == "random" || w == "random-fully" || w == "persistent":
		return 1, nil, []string{"--" + w}
	case target == "MASQUERADE" && w == "masq" && i+2 < len(f) && f[i+1] == "ports:":
		return 3, nil, []string{"--to-ports", f[i+2]}
	case strings.HasPrefix(w, "to:") && target == "SNAT":
		return 1, nil, []string{"--to-source", w[3:]}
	case strings.HasPrefix(w, "to:") && target == "DNAT":
		return 1, nil, []string{"--to-destination", w[3:]}
	}
	return 1, nil, nil
}
