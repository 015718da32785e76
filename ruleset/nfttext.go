package ruleset

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/snatrace/snatrace/natrule"
)

// iptablesNftTables are the table names iptables-nft creates.
var iptablesNftTables = map[string]bool{"nat": true, "filter": true, "mangle": true, "raw": true, "security": true}

// nftTable is the state of one table while a dump is read.
type nftTable struct {
	family  Family
	name    string
	backend Backend
	first   int // index of the table's first chain in rs.Chains
	rules   int // index of the table's first rule in rs.Rules
}

// ParseNftText reads the output of `nft list ruleset` (with or without -a
// handles, any families). name labels errors and the Source.
//
// Rules with a masquerade or snat statement become Rules; iptables-nft rules
// (tables nat/filter/... with iptables' upper-case chains, or announced by
// nft's "managed by iptables-nft" warning) get the IptablesNft backend.
// Sets, maps, flowtables and stateful objects are skipped.
func ParseNftText(data, name string) (*Ruleset, error) {
	rs := &Ruleset{}
	src := Source{Backend: Nftables, Where: name, Format: "nft"}
	var (
		table     *nftTable
		chain     = -1 // index in rs.Chains of the open chain
		skipDepth int  // >0 while inside a set/map/flowtable/object block
		skipKind  string
		managed   = map[string]bool{} // "family name" tables nft warned about
		lineNo    int
	)
	fail := func(format string, a ...any) error {
		return &ParseError{File: name, Line: lineNo, Msg: fmt.Sprintf(format, a...)}
	}
	for len(data) > 0 {
		lineNo++
		line := data
		if i := strings.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = ""
		}
		body, handle, err := splitHandle(line)
		if err != nil {
			return nil, fail("%v", err)
		}
		body = strings.TrimSpace(body)
		if body == "" {
			if strings.HasPrefix(strings.TrimSpace(line), "# Warning: table ") {
				// "# Warning: table ip nat is managed by iptables-nft, do not touch!"
				f := strings.Fields(strings.TrimSpace(line))
				if len(f) >= 5 && strings.Contains(line, "iptables-nft") {
					managed[f[3]+" "+f[4]] = true
				}
			}
			continue
		}
		if skipDepth > 0 {
			d, err := braceDelta(body)
			if err != nil {
				return nil, fail("%v", err)
			}
			skipDepth += d
			if skipDepth < 0 {
				return nil, fail("unbalanced '}' in %s", skipKind)
			}
			continue
		}
		words, err := nftWords(body)
		if err != nil {
			return nil, fail("%v", err)
		}
		switch {
		case table == nil:
			if words[0] != "table" {
				return nil, fail("unexpected %q outside a table: want \"table FAMILY NAME {\"", clip(body))
			}
			fam, tname, err := tableHeader(words)
			if err != nil {
				return nil, fail("%v", err)
			}
			table = &nftTable{family: fam, name: tname, backend: Nftables, first: len(rs.Chains), rules: len(rs.Rules)}
			if managed[string(fam)+" "+tname] {
				table.backend = IptablesNft
			}
		case chain < 0:
			switch words[0] {
			case "}":
				if len(words) != 1 {
					return nil, fail("unexpected %q after '}'", words[1])
				}
				finishTable(rs, table)
				table = nil
			case "chain":
				if len(words) != 3 || words[2] != "{" {
					return nil, fail("want \"chain NAME {\", got %q", clip(body))
				}
				rs.Chains = append(rs.Chains, Chain{Backend: table.backend, Family: table.family, Table: table.name, Name: unquote(words[1]), Handle: handle})
				chain = len(rs.Chains) - 1
			case "comment", "flags":
				// table attributes
			case "set", "map", "flowtable", "counter", "quota", "limit", "secmark", "synproxy", "ct":
				d, err := braceDelta(body)
				if err != nil {
					return nil, fail("%v", err)
				}
				if d < 0 {
					return nil, fail("unbalanced '}' in %s", words[0])
				}
				skipDepth, skipKind = d, words[0]
			default:
				return nil, fail("unexpected %q in table %s", clip(body), table.name)
			}
		default:
			c := &rs.Chains[chain]
			switch {
			case words[0] == "}":
				if len(words) != 1 {
					return nil, fail("unexpected %q after '}'", words[1])
				}
				chain = -1
			case words[0] == "type" && c.Rules == 0:
				if err := chainHeader(c, body); err != nil {
					return nil, fail("%v", err)
				}
			case words[0] == "policy" && c.Rules == 0:
				c.Policy = strings.TrimSuffix(strings.TrimSuffix(words[len(words)-1], ";"), ";")
			case words[0] == "comment" && len(words) == 2 && c.Rules == 0:
				// chain comment
			default:
				c.Rules++
				if err := nftRule(rs, c, words, body, handle, lineNo); err != nil {
					return nil, fail("%v", err)
				}
			}
		}
	}
	if table != nil || skipDepth > 0 {
		return nil, &ParseError{File: name, Line: lineNo, Msg: "unexpected end of input: missing '}'"}
	}
	for i := range rs.Rules {
		if rs.Rules[i].Backend == IptablesNft {
			src.Backend = IptablesNft
		}
	}
	for _, r := range rs.Rules {
		if r.Backend == Nftables {
			src.Backend = Nftables
		}
	}
	src.Rules = len(rs.Rules)
	rs.Sources = append(rs.Sources, src)
	rs.resolveHooks()
	return rs, nil
}

// finishTable decides whether a table just read was made by iptables-nft and
// fixes the backend of its chains and rules.
func finishTable(rs *Ruleset, t *nftTable) {
	if t.backend != IptablesNft && (t.family == "ip" || t.family == "ip6") && iptablesNftTables[t.name] {
		upper := false
		for _, c := range rs.Chains[t.first:] {
			if _, ok := builtinHooks[c.Name]; ok && c.Hook != "" {
				upper = true
			}
		}
		if upper {
			t.backend = IptablesNft
		}
	}
	for i := t.first; i < len(rs.Chains); i++ {
		rs.Chains[i].Backend = t.backend
	}
	for i := t.rules; i < len(rs.Rules); i++ {
		rs.Rules[i].Backend = t.backend
	}
	for i := range rs.Jumps {
		j := &rs.Jumps[i]
		if j.Table == t.name && j.Family == t.family {
			j.Backend = t.backend
		}
	}
}

// splitHandle cuts a trailing "# handle N" (or any # comment) off line.
func splitHandle(line string) (string, uint64, error) {
	inQuote := false
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '"':
			inQuote = !inQuote
		case '#':
			if inQuote {
				continue
			}
			rest := strings.TrimSpace(line[i+1:])
			if h, ok := strings.CutPrefix(rest, "handle "); ok {
				n, err := strconv.ParseUint(strings.TrimSpace(h), 10, 64)
				if err != nil {
					return "", 0, fmt.Errorf("bad handle %q", h)
				}
				return line[:i], n, nil
			}
			return line[:i], 0, nil
		}
	}
	return line, 0, nil
}

// braceDelta counts '{' minus '}' outside quotes.
func braceDelta(s string) (int, error) {
	d, inQuote := 0, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			inQuote = !inQuote
		case '{':
			if !inQuote {
				d++
			}
		case '}':
			if !inQuote {
				d--
			}
		}
	}
	if inQuote {
		return 0, errors.New("unterminated quote")
	}
	return d, nil
}

// nftWords splits an nft line on blanks, keeping quoted strings (with their
// quotes) as one word.
func nftWords(s string) ([]string, error) {
	var out []string
	i := 0
	for i < len(s) {
		if s[i] == ' ' || s[i] == '\t' {
			i++
			continue
		}
		j := i
		inQuote := false
		for j < len(s) && (inQuote || (s[j] != ' ' && s[j] != '\t')) {
			if s[j] == '"' {
				inQuote = !inQuote
			}
			j++
		}
		if inQuote {
			return nil, errors.New("unterminated quote")
		}
		out = append(out, s[i:j])
		i = j
	}
	if len(out) == 0 {
		return nil, errors.New("empty line")
	}
	return out, nil
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

var nftFamilies = map[string]bool{"ip": true, "ip6": true, "inet": true, "arp": true, "bridge": true, "netdev": true}

// tableHeader parses "table [FAMILY] NAME {".
func tableHeader(w []string) (Family, string, error) {
	if w[len(w)-1] != "{" {
		return "", "", errors.New("want \"table FAMILY NAME {\"")
	}
	switch len(w) {
	case 3:
		return "ip", unquote(w[1]), nil
	case 4:
		if !nftFamilies[w[1]] {
			return "", "", fmt.Errorf("unknown table family %q", w[1])
		}
		return Family(w[1]), unquote(w[2]), nil
	}
	return "", "", errors.New("want \"table FAMILY NAME {\"")
}

// chainHeader parses "type nat hook postrouting priority srcnat; policy accept;".
func chainHeader(c *Chain, s string) error {
	for _, part := range strings.Split(s, ";") {
		f := strings.Fields(part)
		for i := 0; i+1 < len(f); i++ {
			switch f[i] {
			case "type":
				c.Type = f[i+1]
			case "hook":
				c.Hook = f[i+1]
			case "priority":
				c.Priority = nftPriority(f[i+1:])
			case "policy":
				c.Policy = f[i+1]
			}
		}
	}
	if c.Type == "" || c.Hook == "" {
		return fmt.Errorf("bad chain header %q", clip(s))
	}
	return nil
}

// nftPriority turns "srcnat", "dstnat + 10", "100" into a number.
func nftPriority(f []string) int {
	names := map[string]int{"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
	if len(f) == 0 {
		return 0
	}
	base, ok := names[f[0]]
	if !ok {
		n, _ := strconv.Atoi(f[0])
		return n
	}
	if len(f) >= 3 {
		n, _ := strconv.Atoi(f[2])
		switch f[1] {
		case "+":
			base += n
		case "-":
			base -= n
		}
	}
	return base
}

// nftRule records the jumps of one rule line and, when it has a NAT
// statement, the Rule.
func nftRule(rs *Ruleset, c *Chain, w []string, body string, handle uint64, line int) error {
	var comment string
	for i := 0; i+1 < len(w); i++ {
		switch w[i] {
		case "jump", "goto":
			rs.Jumps = append(rs.Jumps, Jump{Backend: c.Backend, Family: c.Family, Table: c.Table, From: c.Name, To: strings.TrimSuffix(unquote(w[i+1]), ",")})
		case "comment":
			comment = unquote(w[i+1])
		}
	}
	start := -1
	for i, x := range w {
		if x == "masquerade" || x == "snat" || (x == "xt" && i+2 < len(w) && w[i+1] == "target") {
			start = i
			break
		}
	}
	if start < 0 {
		return nil
	}
	end := len(w)
	for i := start + 1; i < len(w); i++ {
		if w[i] == "comment" {
			end = i
			break
		}
	}
	r := Rule{
		Backend: c.Backend, Family: c.Family, Table: c.Table, Chain: c.Name, Hook: c.Hook,
		Position: c.Rules, Handle: handle, Comment: comment, Text: body, Line: line, FlagsKnown: true,
	}
	stmt := strings.Join(w[start:end], " ")
	if w[start] == "xt" {
		// An iptables-nft target that nft could not translate.
		switch unquote(w[start+2]) {
		case "MASQUERADE":
			r.NAT.Action = natrule.Masquerade
		case "SNAT":
			r.NAT.Action = natrule.SNAT
		default:
			return nil
		}
		r.XT, r.FlagsKnown = true, false
	} else {
		m, err := natrule.ParseMode(stmt)
		if err != nil {
			if !strings.ContainsAny(stmt, "@{") && !strings.Contains(stmt, " map ") {
				return fmt.Errorf("reading %q: %w", stmt, err)
			}
			// snat to ip saddr map { ... }: the addresses come from a map.
			m = natrule.Mode{Action: natrule.SNAT}
			for _, x := range w[start:end] {
				for _, f := range strings.Split(x, ",") {
					switch f {
					case "random":
						m.Random = true
					case "fully-random":
						m.FullyRandom = true
					case "persistent":
						m.Persistent = true
					}
				}
			}
			rs.Warnings = append(rs.Warnings, fmt.Sprintf("line %d: %s: addresses come from a map; flags read as given", line, clip(stmt)))
		}
		if w[start] == "masquerade" {
			m.Action = natrule.Masquerade
		}
		r.NAT = m
	}
	r.Match = nftMatch(w[:start])
	rs.Rules = append(rs.Rules, r)
	return nil
}

// nftMatch joins the match words, dropping counters (they change with every
// packet and say nothing about the rule).
func nftMatch(w []string) string {
	out := make([]string, 0, len(w))
	for i := 0; i < len(w); i++ {
		if w[i] == "counter" {
			if i+4 < len(w) && w[i+1] == "packets" {
				i += 4
			}
			continue
		}
		out = append(out, w[i])
	}
	return strings.Join(out, " ")
}
