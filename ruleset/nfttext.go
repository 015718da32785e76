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

// tableKey names a table, or a chain of it.
type tableKey struct {
	fam          Family
	table, chain string // chain "": the table
}

// iptablesNftTablesOf returns the tables that iptables-nft made, as far as
// their chains tell: the upper-case built-in chains of nat, filter, mangle,
// raw or security as base chains.
func iptablesNftTablesOf(chains []Chain) map[tableKey]bool {
	ipt := map[tableKey]bool{}
	for _, c := range chains {
		if _, ok := builtinHooks[c.Name]; ok && c.Hook != "" && iptablesNftTables[c.Table] && (c.Family == natrule.IPv4 || c.Family == natrule.IPv6) {
			ipt[tableKey{c.Family, c.Table, ""}] = true
		}
	}
	return ipt
}

// nftTable is the state of one table while a dump is read.
type nftTable struct {
	family  Family
	name    string
	backend Backend
	first   int // index of the table's first chain in rs.Chains
	rules   int // index of the table's first rule in rs.Rules
}

// nftParser holds the state of one nft list ruleset dump being read.
type nftParser struct {
	name      string
	rs        *Ruleset
	table     *nftTable
	chain     int // index in rs.Chains of the open chain, -1 outside one
	skipDepth int // >0 while inside a set/map/flowtable/object block
	skipKind  string
	skipMap   string // the named map being skipped ("" for other blocks)
	// mapJumps are the chains each named verdict map's elements jump or
	// go to (maps are listed before the chains that look them up).
	mapJumps map[tableKey][]string
	managed  map[string]bool // "family name" tables nft warned about
	line     int
}

// ParseNftText reads the output of `nft list ruleset` (with or without -a
// handles, any families). name labels errors and the Source.
//
// Rules with a masquerade or snat statement become Rules; iptables-nft rules
// (tables nat/filter/... with iptables' upper-case chains, or announced by
// nft's "managed by iptables-nft" warning) get the natrule.IptablesNFT backend.
// Sets, maps, flowtables and stateful objects are skipped.
func ParseNftText(data, name string) (*Ruleset, error) {
	p := &nftParser{name: name, rs: &Ruleset{}, chain: -1, managed: map[string]bool{}}
	for len(data) > 0 {
		p.line++
		line := data
		if i := strings.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = ""
		}
		if err := p.parseLine(line); err != nil {
			return nil, err
		}
	}
	if p.table != nil || p.skipDepth > 0 {
		return nil, &ParseError{File: name, Line: p.line, Msg: "unexpected end of input: missing '}'"}
	}
	src := Source{Backend: natrule.Nftables, Where: name, Format: "nft", Rules: len(p.rs.Rules)}
	for _, r := range p.rs.Rules {
		if r.Backend == natrule.IptablesNFT {
			src.Backend = natrule.IptablesNFT
		}
	}
	for _, r := range p.rs.Rules {
		if r.Backend == natrule.Nftables {
			src.Backend = natrule.Nftables
		}
	}
	p.rs.Sources = append(p.rs.Sources, src)
	p.rs.resolveHooks()
	return p.rs, nil
}

func (p *nftParser) fail(format string, a ...any) error {
	return &ParseError{File: p.name, Line: p.line, Msg: fmt.Sprintf(format, a...)}
}

// parseLine handles one line in whichever block is open.
func (p *nftParser) parseLine(line string) error {
	body, handle, err := splitHandle(line)
	if err != nil {
		return p.fail("%v", err)
	}
	body = strings.TrimSpace(body)
	if body == "" {
		p.noteWarning(line)
		return nil
	}
	if p.skipDepth > 0 {
		d, err := braceDelta(body)
		if err != nil {
			return p.fail("%v", err)
		}
		if p.skipDepth += d; p.skipDepth < 0 {
			return p.fail("unbalanced '}' in %s", p.skipKind)
		}
		p.mapElements(body)
		return nil
	}
	words, err := nftWords(body)
	if err != nil {
		return p.fail("%v", err)
	}
	switch {
	case p.table == nil:
		return p.tableLine(words, body)
	case p.chain < 0:
		return p.inTable(words, body, handle)
	}
	return p.inChain(words, body, handle)
}

// noteWarning remembers the tables nft says iptables-nft manages:
// "# Warning: table ip nat is managed by iptables-nft, do not touch!".
func (p *nftParser) noteWarning(line string) {
	t := strings.TrimSpace(line)
	if !strings.HasPrefix(t, "# Warning: table ") || !strings.Contains(line, "iptables-nft") {
		return
	}
	if f := strings.Fields(t); len(f) >= 5 {
		p.managed[f[3]+" "+f[4]] = true
	}
}

func (p *nftParser) tableLine(words []string, body string) error {
	if words[0] != "table" {
		return p.fail("unexpected %q outside a table: want \"table FAMILY NAME {\"", clip(body))
	}
	fam, tname, err := tableHeader(words)
	if err != nil {
		return p.fail("%v", err)
	}
	p.table = &nftTable{family: fam, name: tname, backend: natrule.Nftables, first: len(p.rs.Chains), rules: len(p.rs.Rules)}
	if p.managed[string(fam)+" "+tname] {
		p.table.backend = natrule.IptablesNFT
	}
	return nil
}

// inTable handles a line of a table outside its chains.
func (p *nftParser) inTable(words []string, body string, handle uint64) error {
	switch words[0] {
	case "}":
		if len(words) != 1 {
			return p.fail("unexpected %q after '}'", words[1])
		}
		finishTable(p.rs, p.table)
		p.table = nil
	case "chain":
		if len(words) != 3 || words[2] != "{" {
			return p.fail("want \"chain NAME {\", got %q", clip(body))
		}
		t := p.table
		p.rs.Chains = append(p.rs.Chains, Chain{Backend: t.backend, Family: t.family, Table: t.name, Name: unquote(words[1]), Handle: handle})
		p.chain = len(p.rs.Chains) - 1
	case "comment", "flags":
		// table attributes
	case "set", "map", "flowtable", "counter", "quota", "limit", "secmark", "synproxy", "ct":
		d, err := braceDelta(body)
		if err != nil {
			return p.fail("%v", err)
		}
		if d < 0 {
			return p.fail("unbalanced '}' in %s", words[0])
		}
		p.skipDepth, p.skipKind, p.skipMap = d, words[0], ""
		if words[0] == "map" && len(words) > 1 {
			p.skipMap = unquote(words[1])
			p.mapElements(body)
		}
	default:
		return p.fail("unexpected %q in table %s", clip(body), p.table.name)
	}
	return nil
}

// mapElements records the jump and goto targets on a line of the named map
// being skipped.
func (p *nftParser) mapElements(body string) {
	if p.skipMap == "" || p.table == nil {
		return
	}
	w := strings.FieldsFunc(body, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' || r == '{' || r == '}' })
	for i := 0; i+1 < len(w); i++ {
		if w[i] == "jump" || w[i] == "goto" {
			if p.mapJumps == nil {
				p.mapJumps = map[tableKey][]string{}
			}
			k := tableKey{p.table.family, p.table.name, p.skipMap}
			p.mapJumps[k] = append(p.mapJumps[k], unquote(w[i+1]))
		}
	}
}

// inChain handles a line of a chain: its header, its end or a rule.
func (p *nftParser) inChain(words []string, body string, handle uint64) error {
	c := &p.rs.Chains[p.chain]
	switch {
	case words[0] == "}":
		if len(words) != 1 {
			return p.fail("unexpected %q after '}'", words[1])
		}
		p.chain = -1
	case words[0] == "type" && c.Rules == 0:
		if err := chainHeader(c, body); err != nil {
			return p.fail("%v", err)
		}
	case words[0] == "policy" && c.Rules == 0:
		c.Policy = strings.TrimSuffix(strings.TrimSuffix(words[len(words)-1], ";"), ";")
	case words[0] == "comment" && len(words) == 2 && c.Rules == 0:
		// chain comment
	default:
		c.Rules++
		if err := nftRule(p.rs, c, words, body, handle, p.line); err != nil {
			return p.fail("%v", err)
		}
		for i := 0; i+1 < len(words); i++ {
			if words[i] == "vmap" && strings.HasPrefix(words[i+1], "@") {
				for _, to := range p.mapJumps[tableKey{c.Family, c.Table, strings.TrimPrefix(words[i+1], "@")}] {
					p.rs.Jumps = append(p.rs.Jumps, Jump{Backend: c.Backend, Family: c.Family, Table: c.Table, From: c.Name, To: to})
				}
			}
		}
	}
	return nil
}

// finishTable decides whether a table just read was made by iptables-nft and
// fixes the backend of its chains and rules.
func finishTable(rs *Ruleset, t *nftTable) {
	if t.backend != natrule.IptablesNFT && (t.family == natrule.IPv4 || t.family == natrule.IPv6) && iptablesNftTables[t.name] {
		upper := false
		for _, c := range rs.Chains[t.first:] {
			if _, ok := builtinHooks[c.Name]; ok && c.Hook != "" {
				upper = true
			}
		}
		if upper {
			t.backend = natrule.IptablesNFT
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
			// nft built without xtables prints an iptables-nft target it
			// cannot translate as "# xt_MASQUERADE": keep it as the
			// statement it is (its flags unseen).
			if xt, ok := strings.CutPrefix(rest, "xt_"); ok {
				name, after, _ := strings.Cut(xt, " ")
				head, n, err := splitHandle(after)
				if err != nil {
					return "", 0, err
				}
				return line[:i] + " xt target " + name + " " + head, n, nil
			}
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
		return natrule.IPv4, unquote(w[1]), nil
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
		if x == "masquerade" || isSNATStatement(w, i) || (x == "xt" && i+2 < len(w) && w[i+1] == "target") {
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
		Location: Location{Backend: c.Backend, Family: c.Family, Table: c.Table, Chain: c.Name, Position: c.Rules, Handle: handle},
		Hook:     c.Hook, Comment: comment, Text: body, Line: line, FlagsKnown: true,
	}
	stmt := w[start:end]
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
		m, warn, err := nftStatement(stmt)
		if err != nil {
			return err
		}
		if warn != "" {
			rs.Warnings = append(rs.Warnings, fmt.Sprintf("line %d: %s", line, warn))
		}
		r.NAT = m
	}
	r.Match = nftMatch(w[:start])
	rs.Rules = append(rs.Rules, r)
	return nil
}

// isSNATStatement reports whether w[i] starts an snat statement ("snat to",
// "snat ip to", "snat ip6 to"), not the conntrack status flag of a match
// such as "ct status snat".
func isSNATStatement(w []string, i int) bool {
	if w[i] != "snat" || i+1 >= len(w) {
		return false
	}
	switch w[i+1] {
	case "to", "ip", "ip6":
		return true
	}
	return false
}

// nftStatement reads a masquerade or snat statement. One whose addresses
// come from a map (snat to ip saddr map { ... }) has its flags read word by
// word and a warning.
func nftStatement(w []string) (m natrule.Mode, warn string, err error) {
	stmt := strings.Join(w, " ")
	m, err = natrule.ParseMode(stmt)
	if err != nil {
		if !strings.ContainsAny(stmt, "@{") && !strings.Contains(stmt, " map ") {
			return m, "", fmt.Errorf("reading %q: %w", stmt, err)
		}
		m = natrule.Mode{Action: natrule.SNAT}
		for _, x := range w {
			for _, f := range strings.Split(x, ",") {
				m.SetFlag(f)
			}
		}
		warn = fmt.Sprintf("%s: addresses come from a map; flags read as given", clip(stmt))
	}
	if w[0] == "masquerade" {
		m.Action = natrule.Masquerade
	}
	return m, warn, nil
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
