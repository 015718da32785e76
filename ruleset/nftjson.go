package ruleset

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/snatrace/snatrace/natrule"
)

// jsonChain and jsonRule are the parts of libnftables' JSON schema we read.
type jsonChain struct {
	Family string `json:"family"`
	Table  string `json:"table"`
	Name   string `json:"name"`
	Handle uint64 `json:"handle"`
	Type   string `json:"type"`
	Hook   string `json:"hook"`
	Prio   int    `json:"prio"`
	Policy string `json:"policy"`
}

type jsonRule struct {
	Family  string                       `json:"family"`
	Table   string                       `json:"table"`
	Chain   string                       `json:"chain"`
	Handle  uint64                       `json:"handle"`
	Comment string                       `json:"comment"`
	Expr    []map[string]json.RawMessage `json:"expr"`
}

// lineCounter turns byte offsets into 1-based line numbers, moving forward.
type lineCounter struct {
	data string
	off  int
	line int
}

func (lc *lineCounter) at(off int) int {
	if off > len(lc.data) {
		off = len(lc.data)
	}
	if off < lc.off {
		lc.off, lc.line = 0, 1
	}
	lc.line += strings.Count(lc.data[lc.off:off], "\n")
	lc.off = off
	// The element starts after separators that follow the offset.
	rest := lc.data[off:]
	trimmed := strings.TrimLeft(rest, " \t\r\n,")
	return lc.line + strings.Count(rest[:len(rest)-len(trimmed)], "\n")
}

// jsonParser holds the state of one nft -j dump being read.
type jsonParser struct {
	name     string
	lc       *lineCounter
	dec      *json.Decoder
	rs       *Ruleset
	tables   map[string]Backend // "family name" -> backend, decided at the end
	chainIdx map[tableKey]int   // index in rs.Chains
	// mapJumps are the chains each named verdict map's elements jump or
	// go to; mapRefs the rules' lookups of them (a chain, the map),
	// joined into jumps once the whole document is read.
	mapJumps map[tableKey][]string
	mapRefs  []mapRef
}

// mapRef is a rule of chain from looking up the verdict map set.
type mapRef struct {
	from, set tableKey
	comment   string
}

func (p *jsonParser) fail(off int, format string, a ...any) error {
	return &ParseError{File: p.name, Line: p.lc.at(off), Msg: fmt.Sprintf(format, a...)}
}

// jsonErr locates a decoding error at its offset.
func (p *jsonParser) jsonErr(err error, off int) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = int(se.Offset)
	case errors.As(err, &te):
		off = int(te.Offset)
	}
	return &ParseError{File: p.name, Line: p.lc.at(off), Msg: "bad JSON", Err: err}
}

// ParseNftJSON reads the output of `nft -j list ruleset`. name labels errors
// and the Source. Errors carry the line of the offending element.
//
// nft -j shows iptables-nft targets only as {"xt": {"type": "target",
// "name": "MASQUERADE"}}, without their flags: such rules have FlagsKnown
// false (audit them live, or from nft text or iptables-save, to see flags).
func ParseNftJSON(data, name string) (*Ruleset, error) {
	p := &jsonParser{name: name, lc: &lineCounter{data: data, line: 1}, rs: &Ruleset{}, tables: map[string]Backend{}, chainIdx: map[tableKey]int{}}
	p.dec = json.NewDecoder(strings.NewReader(data))
	p.dec.UseNumber()
	if err := p.document(); err != nil {
		return nil, err
	}
	p.mapRefJumps()
	p.decideBackends()
	rs := p.rs
	for _, r := range rs.Rules {
		if !r.FlagsKnown {
			rs.Warnings = append(rs.Warnings, fmt.Sprintf("%s: nft -j does not show the flags of iptables-nft targets; read it live or from iptables-save", r.Label()))
		}
	}
	src := Source{Backend: natrule.Nftables, Where: name, Format: "nft-json", Rules: len(rs.Rules)}
	if len(rs.Rules) > 0 {
		src.Backend = rs.Rules[0].Backend
	}
	rs.Sources = append(rs.Sources, src)
	rs.resolveHooks()
	return rs, nil
}

// document reads {"nftables": [...]} and skips other keys.
func (p *jsonParser) document() error {
	tok, err := p.dec.Token()
	if err != nil {
		return p.jsonErr(err, 0)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return p.fail(0, "want a JSON object {\"nftables\": [...]}")
	}
	seen := false
	for p.dec.More() {
		tok, err := p.dec.Token()
		if err != nil {
			return p.jsonErr(err, int(p.dec.InputOffset()))
		}
		if key, _ := tok.(string); key != "nftables" {
			var skip json.RawMessage
			if err := p.dec.Decode(&skip); err != nil {
				return p.jsonErr(err, int(p.dec.InputOffset()))
			}
			continue
		}
		seen = true
		if err := p.elements(); err != nil {
			return err
		}
	}
	if _, err := p.dec.Token(); err != nil {
		return p.jsonErr(err, int(p.dec.InputOffset()))
	}
	if !seen {
		return p.fail(0, "no \"nftables\" array")
	}
	return nil
}

// elements reads the "nftables" array: chains and rules, the rest skipped.
func (p *jsonParser) elements() error {
	tok, err := p.dec.Token()
	if err != nil {
		return p.jsonErr(err, int(p.dec.InputOffset()))
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return p.fail(int(p.dec.InputOffset()), "\"nftables\" must be an array")
	}
	for p.dec.More() {
		off := int(p.dec.InputOffset())
		var el map[string]json.RawMessage
		if err := p.dec.Decode(&el); err != nil {
			return p.jsonErr(err, off)
		}
		if raw, ok := el["chain"]; ok {
			if err := p.chain(raw, off); err != nil {
				return err
			}
		}
		if raw, ok := el["map"]; ok {
			p.verdictMap(raw)
		}
		if raw, ok := el["rule"]; ok {
			var r jsonRule
			if err := json.Unmarshal(raw, &r); err != nil {
				return p.fail(off, "bad rule: %v", err)
			}
			if err := p.rule(&r, p.lc.at(off)); err != nil {
				return p.fail(off, "%v", err)
			}
		}
	}
	if _, err := p.dec.Token(); err != nil {
		return p.jsonErr(err, int(p.dec.InputOffset()))
	}
	return nil
}

func (p *jsonParser) chain(raw json.RawMessage, off int) error {
	var c jsonChain
	if err := json.Unmarshal(raw, &c); err != nil {
		return p.fail(off, "bad chain: %v", err)
	}
	if c.Name == "" || c.Table == "" {
		return p.fail(off, "chain without a name or table")
	}
	k := tableKey{Family(c.Family), c.Table, c.Name}
	if _, dup := p.chainIdx[k]; !dup {
		p.chainIdx[k] = len(p.rs.Chains)
	}
	p.rs.Chains = append(p.rs.Chains, Chain{Backend: natrule.Nftables, Family: Family(c.Family), Table: c.Table, Name: c.Name,
		Hook: c.Hook, Type: c.Type, Priority: c.Prio, Policy: c.Policy, Handle: c.Handle})
	p.tables[c.Family+" "+c.Table] = natrule.Nftables
	return nil
}

// decideBackends marks the iptables-nft tables: the upper-case built-in
// chains of nat/filter/..., or any xt expression.
func (p *jsonParser) decideBackends() {
	for k := range iptablesNftTablesOf(p.rs.Chains) {
		p.tables[string(k.fam)+" "+k.table] = natrule.IptablesNFT
	}
	for _, r := range p.rs.Rules {
		if r.XT {
			p.tables[string(r.Family)+" "+r.Table] = natrule.IptablesNFT
		}
	}
	setBackends(p.rs, func(f Family, table string) Backend {
		if b, ok := p.tables[string(f)+" "+table]; ok {
			return b
		}
		return natrule.Nftables
	})
}

// setBackends sets the backend of every chain, jump and rule from its table.
func setBackends(rs *Ruleset, of func(Family, string) Backend) {
	for i := range rs.Chains {
		rs.Chains[i].Backend = of(rs.Chains[i].Family, rs.Chains[i].Table)
	}
	setRuleBackends(rs, of)
}

// setRuleBackends is setBackends of the jumps and rules alone.
func setRuleBackends(rs *Ruleset, of func(Family, string) Backend) {
	for i := range rs.Jumps {
		rs.Jumps[i].Backend = of(rs.Jumps[i].Family, rs.Jumps[i].Table)
	}
	for i := range rs.Rules {
		rs.Rules[i].Backend = of(rs.Rules[i].Family, rs.Rules[i].Table)
	}
}

// rule records the jumps of r and, if it has a NAT statement, the Rule.
func (p *jsonParser) rule(r *jsonRule, line int) error {
	ci, ok := p.chainIdx[tableKey{Family(r.Family), r.Table, r.Chain}]
	if !ok {
		return fmt.Errorf("rule in chain %q of table %s %q, which the dump does not list", r.Chain, r.Family, r.Table)
	}
	c := &p.rs.Chains[ci]
	c.Rules++
	match, rule, err := p.exprs(r)
	if err != nil || rule == nil {
		return err
	}
	rule.Location = Location{Family: Family(r.Family), Table: r.Table, Chain: r.Chain, Position: c.Rules, Handle: r.Handle}
	rule.Hook, rule.Comment, rule.Line = c.Hook, r.Comment, line
	rule.Match = strings.Join(match, " ")
	stmt := rule.NAT.String()
	if rule.XT {
		stmt = "xt target " + map[natrule.Action]string{natrule.Masquerade: "MASQUERADE", natrule.SNAT: "SNAT"}[rule.NAT.Action]
	}
	rule.Text = strings.TrimSpace(rule.Match + " " + stmt)
	if rule.Comment != "" {
		rule.Text += " comment " + strconv.Quote(rule.Comment)
	}
	p.rs.Rules = append(p.rs.Rules, *rule)
	return nil
}

// verdictMap records the chains a named verdict map's elements jump or go
// to.
func (p *jsonParser) verdictMap(raw json.RawMessage) {
	var m struct {
		Family string          `json:"family"`
		Table  string          `json:"table"`
		Name   string          `json:"name"`
		Elem   json.RawMessage `json:"elem"`
	}
	if json.Unmarshal(raw, &m) != nil || len(m.Elem) == 0 {
		return
	}
	if p.mapJumps == nil {
		p.mapJumps = map[tableKey][]string{}
	}
	k := tableKey{Family(m.Family), m.Table, m.Name}
	p.mapJumps[k] = append(p.mapJumps[k], verdictTargets(m.Elem)...)
}

// verdictTargets finds every {"jump"|"goto": {"target": CHAIN}} in v, at
// any depth (the elements of an inline or named verdict map).
func verdictTargets(v json.RawMessage) []string {
	var out []string
	var walk func(x any)
	walk = func(x any) {
		switch x := x.(type) {
		case map[string]any:
			for k, e := range x {
				if t, ok := e.(map[string]any); ok && (k == "jump" || k == "goto") {
					if to, ok := t["target"].(string); ok {
						out = append(out, to)
						continue
					}
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	var x any
	if json.Unmarshal(v, &x) == nil {
		walk(x)
	}
	return out
}

// vmapJumps records the jumps of a rule's vmap expression: inline
// elements now, a named map's ("@name") once the document is read.
func (p *jsonParser) vmapJumps(r *jsonRule, v json.RawMessage) {
	var vm struct {
		Data json.RawMessage `json:"data"`
	}
	if json.Unmarshal(v, &vm) != nil {
		return
	}
	var named string
	if json.Unmarshal(vm.Data, &named) == nil && strings.HasPrefix(named, "@") {
		p.mapRefs = append(p.mapRefs, mapRef{from: tableKey{Family(r.Family), r.Table, r.Chain}, set: tableKey{Family(r.Family), r.Table, named[1:]}, comment: r.Comment})
		return
	}
	for _, to := range verdictTargets(vm.Data) {
		p.rs.Jumps = append(p.rs.Jumps, Jump{Family: Family(r.Family), Table: r.Table, From: r.Chain, To: to, Comment: r.Comment})
	}
}

// mapRefJumps turns the rules' lookups of named verdict maps into jumps.
func (p *jsonParser) mapRefJumps() {
	for _, ref := range p.mapRefs {
		for _, to := range p.mapJumps[ref.set] {
			p.rs.Jumps = append(p.rs.Jumps, Jump{Family: ref.from.fam, Table: ref.from.table, From: ref.from.chain, To: to, Comment: ref.comment})
		}
	}
}

// exprs reads a rule's expressions: its match words, its jumps (recorded)
// and its NAT statement (nil for a rule without one).
func (p *jsonParser) exprs(r *jsonRule) (match []string, rule *Rule, err error) {
	for _, e := range r.Expr {
		if len(e) != 1 {
			return nil, nil, errors.New("an expression must have exactly one key")
		}
		for k, v := range e {
			switch k {
			case "counter":
			case "jump", "goto":
				var t struct {
					Target string `json:"target"`
				}
				if err := json.Unmarshal(v, &t); err != nil {
					return nil, nil, fmt.Errorf("bad %s: %w", k, err)
				}
				p.rs.Jumps = append(p.rs.Jumps, Jump{Family: Family(r.Family), Table: r.Table, From: r.Chain, To: t.Target, Comment: r.Comment})
			case "vmap":
				p.vmapJumps(r, v)
				match = append(match, k+" "+jsonTerm(v))
			case "masquerade", "snat":
				m, err := jsonNAT(k, v)
				if err != nil {
					return nil, nil, err
				}
				rule = &Rule{NAT: m, FlagsKnown: true}
			case "xt":
				x, xr, err := jsonXT(v)
				if err != nil {
					return nil, nil, err
				}
				if xr != nil {
					rule = xr
				} else {
					match = append(match, x)
				}
			case "match":
				s, err := jsonMatch(v)
				if err != nil {
					return nil, nil, err
				}
				match = append(match, s)
			default:
				match = append(match, k+" "+jsonTerm(v))
			}
		}
	}
	return match, rule, nil
}

// jsonXT reads {"xt": {"type": .., "name": ..}}: a MASQUERADE or SNAT target
// is a rule whose flags nft -j does not show; anything else a match word.
func jsonXT(v json.RawMessage) (string, *Rule, error) {
	var x struct {
		Type string `json:"type"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(v, &x); err != nil {
		return "", nil, fmt.Errorf("bad xt: %w", err)
	}
	if x.Type == "target" && (x.Name == "MASQUERADE" || x.Name == "SNAT") {
		a := natrule.Masquerade
		if x.Name == "SNAT" {
			a = natrule.SNAT
		}
		return "", &Rule{NAT: natrule.Mode{Action: a}, XT: true}, nil
	}
	return "xt " + x.Type + " " + x.Name, nil, nil
}

// jsonNAT reads {"masquerade": {"port": .., "flags": ..}} or
// {"snat": {"addr": .., "port": .., "flags": ..}}.
func jsonNAT(kind string, v json.RawMessage) (natrule.Mode, error) {
	m := natrule.Mode{Action: natrule.Masquerade}
	if kind == "snat" {
		m.Action = natrule.SNAT
	}
	if string(v) == "null" {
		if kind == "snat" {
			return m, errors.New("snat without an address")
		}
		return m, nil
	}
	var s struct {
		Addr  json.RawMessage `json:"addr"`
		Port  json.RawMessage `json:"port"`
		Flags json.RawMessage `json:"flags"`
	}
	if err := json.Unmarshal(v, &s); err != nil {
		return m, fmt.Errorf("bad %s: %w", kind, err)
	}
	if len(s.Addr) > 0 {
		if kind != "snat" {
			return m, errors.New("masquerade with an address")
		}
		lo, hi, err := jsonRange(s.Addr)
		if err != nil {
			return m, fmt.Errorf("snat addr: %w", err)
		}
		if m.AddrMin, err = netip.ParseAddr(lo); err != nil {
			// snat to ip saddr map {...}: an expression, not an address.
			m.AddrMin = netip.Addr{}
		} else if m.AddrMax, err = netip.ParseAddr(hi); err != nil || m.AddrMax.Less(m.AddrMin) || m.AddrMin.Is4() != m.AddrMax.Is4() {
			return m, fmt.Errorf("snat addr: bad range %s-%s", lo, hi)
		}
	} else if kind == "snat" {
		return m, errors.New("snat without an address")
	}
	if len(s.Port) > 0 {
		lo, hi, err := jsonRange(s.Port)
		if err != nil {
			return m, fmt.Errorf("%s port: %w", kind, err)
		}
		if m.PortMin, err = natrule.ParsePort(lo); err != nil {
			return m, fmt.Errorf("%s port: %w", kind, err)
		}
		if m.PortMax, err = natrule.ParsePort(hi); err != nil {
			return m, fmt.Errorf("%s port: %w", kind, err)
		}
		if m.PortMin > m.PortMax {
			return m, fmt.Errorf("%s port: range %d-%d is reversed", kind, m.PortMin, m.PortMax)
		}
	}
	if len(s.Flags) > 0 {
		var flags []string
		if err := json.Unmarshal(s.Flags, &flags); err != nil {
			var one string
			if err := json.Unmarshal(s.Flags, &one); err != nil {
				return m, fmt.Errorf("%s flags: want a string or a list", kind)
			}
			flags = []string{one}
		}
		for _, f := range flags {
			if !m.SetFlag(f) {
				return m, fmt.Errorf("%s: unknown flag %q", kind, f)
			}
		}
	}
	return m, nil
}

// jsonRange reads a scalar (string or number) or {"range": [lo, hi]}.
func jsonRange(v json.RawMessage) (string, string, error) {
	var r struct {
		Range []json.RawMessage `json:"range"`
	}
	var pr struct {
		Prefix *struct {
			Addr string `json:"addr"`
			Len  int    `json:"len"`
		} `json:"prefix"`
	}
	if len(v) > 0 && v[0] == '{' {
		if err := json.Unmarshal(v, &r); err == nil && len(r.Range) == 2 {
			return scalar(r.Range[0]), scalar(r.Range[1]), nil
		}
		if err := json.Unmarshal(v, &pr); err == nil && pr.Prefix != nil {
			p, err := netip.ParsePrefix(fmt.Sprintf("%s/%d", pr.Prefix.Addr, pr.Prefix.Len))
			if err != nil {
				return "", "", fmt.Errorf("bad prefix %s: %w", clip(string(v)), err)
			}
			lo, hi := natrule.PrefixRange(p)
			return lo.String(), hi.String(), nil
		}
		// An expression (map lookup): not a literal range.
		return jsonTerm(v), jsonTerm(v), nil
	}
	s := scalar(v)
	if s == "" {
		return "", "", fmt.Errorf("want a value, got %s", clip(string(v)))
	}
	return s, s, nil
}

// scalar returns a JSON string or number as text, "" otherwise.
func scalar(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(v, &n) == nil {
		return n.String()
	}
	return ""
}

// jsonMatch renders {"op": .., "left": .., "right": ..} in nft syntax.
func jsonMatch(v json.RawMessage) (string, error) {
	var m struct {
		Op    string          `json:"op"`
		Left  json.RawMessage `json:"left"`
		Right json.RawMessage `json:"right"`
	}
	if err := json.Unmarshal(v, &m); err != nil {
		return "", fmt.Errorf("bad match: %w", err)
	}
	left := jsonTerm(m.Left)
	right := jsonTerm(m.Right)
	if strings.HasSuffix(left, "ifname") {
		if s := scalar(m.Right); s != "" {
			right = strconv.Quote(s)
		}
	}
	switch m.Op {
	case "==", "in", "":
		return left + " " + right, nil
	}
	return left + " " + m.Op + " " + right, nil
}

// jsonTerm renders an nft JSON expression compactly in nft syntax where it
// knows how, and as its JSON otherwise.
func jsonTerm(v json.RawMessage) string {
	if s := scalar(v); s != "" || string(v) == `""` {
		return s
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(v, &obj) == nil && len(obj) == 1 {
		for k, x := range obj {
			switch k {
			case "payload":
				var p struct{ Protocol, Field string }
				if json.Unmarshal(x, &p) == nil && p.Protocol != "" {
					return p.Protocol + " " + p.Field
				}
			case "meta":
				var p struct{ Key string }
				if json.Unmarshal(x, &p) == nil {
					switch p.Key {
					case "iifname", "oifname", "iif", "oif", "mark", "l4proto", "nfproto":
						if p.Key == "mark" || p.Key == "l4proto" || p.Key == "nfproto" {
							return "meta " + p.Key
						}
						return p.Key
					}
					return "meta " + p.Key
				}
			case "ct":
				var p struct{ Key string }
				if json.Unmarshal(x, &p) == nil {
					return "ct " + p.Key
				}
			case "prefix":
				var p struct {
					Addr string
					Len  int
				}
				if json.Unmarshal(x, &p) == nil {
					return p.Addr + "/" + strconv.Itoa(p.Len)
				}
			case "range":
				var p []json.RawMessage
				if json.Unmarshal(x, &p) == nil && len(p) == 2 {
					return jsonTerm(p[0]) + "-" + jsonTerm(p[1])
				}
			case "set":
				var p []json.RawMessage
				if json.Unmarshal(x, &p) == nil {
					parts := make([]string, len(p))
					for i := range p {
						parts[i] = jsonTerm(p[i])
					}
					return "{ " + strings.Join(parts, ", ") + " }"
				}
				return "{ " + jsonTerm(x) + " }"
			case "&", "|", "^":
				var p []json.RawMessage
				if json.Unmarshal(x, &p) == nil && len(p) == 2 {
					return jsonTerm(p[0]) + " " + k + " " + jsonTerm(p[1])
				}
			case "concat":
				var p []json.RawMessage
				if json.Unmarshal(x, &p) == nil {
					parts := make([]string, len(p))
					for i := range p {
						parts[i] = jsonTerm(p[i])
					}
					return strings.Join(parts, " . ")
				}
			}
		}
	}
	var list []json.RawMessage
	if json.Unmarshal(v, &list) == nil {
		parts := make([]string, len(list))
		for i := range list {
			parts[i] = jsonTerm(list[i])
		}
		return strings.Join(parts, ",")
	}
	return string(v)
}
