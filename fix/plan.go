package fix

import (
	"errors"
	"fmt"
	"strings"

	"github.com/snatrace/snatrace/audit"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/ruleset"
)

// Method is how a change reaches the kernel.
type Method string

const (
	// MethodNetlink replaces nftables rules (native and iptables-nft) by
	// handle in one netlink batch guarded by the ruleset generation.
	MethodNetlink Method = "netlink"
	// MethodRestore replaces iptables rules with iptables-restore --noflush
	// -w and "-R CHAIN N", guarded by a checksum of the chain.
	MethodRestore Method = "iptables-restore"
)

// Exclusion keeps rules out of a fix: every field that is set must match.
type Exclusion struct {
	Owner ruleset.Owner `json:"owner,omitempty"`
	Chain string        `json:"chain,omitempty"`
}

func (e Exclusion) String() string {
	var p []string
	if e.Owner != "" {
		p = append(p, "owner="+string(e.Owner))
	}
	if e.Chain != "" {
		p = append(p, "chain="+e.Chain)
	}
	return strings.Join(p, ",")
}

func (e Exclusion) matches(r *ruleset.Rule) bool {
	return (e.Owner == "" || e.Owner == r.Owner) && (e.Chain == "" || e.Chain == r.Chain)
}

// ParseExclusion parses "owner=docker", "chain=POSTROUTING" or both joined
// by a comma ("owner=calico,chain=cali-nat-outgoing").
func ParseExclusion(s string) (Exclusion, error) {
	var e Exclusion
	if strings.TrimSpace(s) == "" {
		return e, errors.New("empty exclusion: want owner=NAME or chain=NAME")
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok || v == "" {
			return e, fmt.Errorf("%q: want owner=NAME or chain=NAME", part)
		}
		switch k {
		case "owner":
			o, ok := ruleset.ParseOwner(v)
			if !ok {
				return e, fmt.Errorf("%q: unknown owner %q (want one of %s)", part, v, ownerList())
			}
			e.Owner = o
		case "chain":
			e.Chain = v
		default:
			return e, fmt.Errorf("%q: unknown key %q: want owner or chain", part, k)
		}
	}
	return e, nil
}

func ownerList() string {
	var s []string
	for _, o := range ruleset.Owners() {
		s = append(s, string(o))
	}
	return strings.Join(s, ", ")
}

// ParseOwners parses a comma-separated owner list ("docker,kube-proxy").
func ParseOwners(s string) ([]ruleset.Owner, error) {
	var out []ruleset.Owner
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		o, ok := ruleset.ParseOwner(p)
		if !ok {
			return nil, fmt.Errorf("unknown owner %q (want one of %s)", p, ownerList())
		}
		out = append(out, o)
	}
	return out, nil
}

// Scope narrows which flagged rules a fix touches. The zero Scope takes every
// flagged rule.
type Scope struct {
	// Owners, when set, keeps only rules of these owners.
	Owners []ruleset.Owner `json:"owners,omitempty"`
	// Chains, when set, keeps only rules in chains of these names.
	Chains []string `json:"chains,omitempty"`
	// Exclude drops rules that match any of these.
	Exclude []Exclusion `json:"exclude,omitempty"`
}

// why returns "" when r is in scope, else the reason it is not.
func (s Scope) why(r *ruleset.Rule) string {
	if len(s.Owners) > 0 {
		in := false
		for _, o := range s.Owners {
			in = in || o == r.Owner
		}
		if !in {
			return fmt.Sprintf("owner %s is not in --owner", r.Owner)
		}
	}
	if len(s.Chains) > 0 {
		in := false
		for _, c := range s.Chains {
			in = in || c == r.Chain
		}
		if !in {
			return fmt.Sprintf("chain %s is not in --chain", r.Chain)
		}
	}
	for _, e := range s.Exclude {
		if e.matches(r) {
			return "excluded by --exclude " + e.String()
		}
	}
	return ""
}

// Trade is what a rule gives up when it becomes fully-random; the plan says
// it so that users who rely on port preservation can exclude the rule.
const Trade = "the source port is no longer preserved: peers that key on it (NAT traversal/STUN hole punching, SIP/RTP, " +
	"port-based firewall rules or allowlists downstream) see a random port; keep such rules with --exclude owner=NAME or --exclude chain=NAME"

// Change is one rule a plan makes fully-random.
type Change struct {
	Backend  ruleset.Backend `json:"backend"`
	Family   ruleset.Family  `json:"family"`
	Table    string          `json:"table"`
	Chain    string          `json:"chain"`
	Position int             `json:"position"`
	// Handle is the nftables rule handle (0 for iptables-legacy).
	Handle uint64        `json:"handle,omitempty"`
	Owner  ruleset.Owner `json:"owner"`
	// Finding is the audit finding that selected the rule.
	Finding audit.Kind `json:"finding"`
	Method  Method     `json:"method"`
	From    string     `json:"from"` // NAT statement before ("masquerade")
	To      string     `json:"to"`   // and after ("masquerade fully-random")
	Before  string     `json:"before"`
	After   string     `json:"after"`
	Trade   string     `json:"trade"`

	from, to natrule.Mode
}

// Key names the change's rule the way ruleset.Rule.Key does.
func (c *Change) Key() string {
	if c.Handle != 0 {
		return fmt.Sprintf("%s %s %s %s handle %d", c.Backend, c.Family, c.Table, c.Chain, c.Handle)
	}
	return fmt.Sprintf("%s %s %s %s #%d", c.Backend, c.Family, c.Table, c.Chain, c.Position)
}

// Skipped is a flagged rule the plan leaves alone, and why.
type Skipped struct {
	Backend  ruleset.Backend `json:"backend"`
	Family   ruleset.Family  `json:"family"`
	Table    string          `json:"table"`
	Chain    string          `json:"chain"`
	Position int             `json:"position"`
	Owner    ruleset.Owner   `json:"owner"`
	Rule     string          `json:"rule"`
	Reason   string          `json:"reason"`
}

// Plan is what a fix would change, and the state of the ruleset it was made
// against.
type Plan struct {
	// Generation is the nftables ruleset generation the plan was made at;
	// an apply of nftables changes is refused if it has moved.
	Generation uint32 `json:"generation"`
	// Chains maps ChainID of each iptables chain with a change to a checksum
	// of its rules; an apply through iptables-restore is refused if one
	// differs.
	Chains   map[string]string `json:"chain_checksums,omitempty"`
	Scope    Scope             `json:"scope"`
	Changes  []Change          `json:"changes"`
	Skipped  []Skipped         `json:"skipped"`
	Warnings []string          `json:"warnings,omitempty"`

	// saves are the iptables-save tables the checksums were taken from, by
	// restore group; ApplyFresh reuses them instead of saving again.
	saves map[string]*SaveTable
}

// ChainID names an iptables chain in Plan.Chains: "iptables-legacy ip nat POSTROUTING".
func ChainID(b ruleset.Backend, f ruleset.Family, table, chain string) string {
	return fmt.Sprintf("%s %s %s %s", b, f, table, chain)
}

// Options for MakePlan.
type Options struct {
	Scope Scope
	// IptablesNft is how iptables-nft rules are changed: MethodNetlink (the
	// default, atomic with the native rules) or MethodRestore.
	IptablesNft Method
	// Kernel is the kernel release audit judges against ("" unknown).
	Kernel string
}

// fixable kinds: the ones a fully-random flag resolves.
func fixable(k audit.Kind) bool {
	return k == audit.KindNoFullyRandom || k == audit.KindRandomOnly
}

// MakePlan returns the changes that make every rule of rs that audit flags
// as racing fully-random, within opts.Scope. It is pure: rs may come from a
// live read or a dump (then the plan can be shown, not applied). Rules whose
// only findings fully-random does not resolve (a single port) are not
// changed.
func MakePlan(rs *ruleset.Ruleset, opts Options) *Plan {
	p := &Plan{Generation: rs.Generation, Scope: opts.Scope, Changes: []Change{}, Skipped: []Skipped{}}
	rep := audit.Run(audit.Input{Rules: rs, Kernel: opts.Kernel})
	kinds := map[int]audit.Kind{}
	for _, f := range rep.Findings {
		if f.RuleIndex >= 0 && fixable(f.Kind) {
			kinds[f.RuleIndex] = f.Kind
		}
	}
	for i := range rs.Rules {
		r := &rs.Rules[i]
		kind, ok := kinds[i]
		if !ok {
			continue
		}
		skip := func(reason string) {
			p.Skipped = append(p.Skipped, Skipped{Backend: r.Backend, Family: r.Family, Table: r.Table, Chain: r.Chain,
				Position: r.Position, Owner: r.Owner, Rule: r.Text, Reason: reason})
		}
		if why := opts.Scope.why(r); why != "" {
			skip(why)
			continue
		}
		c := Change{
			Backend: r.Backend, Family: r.Family, Table: r.Table, Chain: r.Chain, Position: r.Position,
			Handle: r.Handle, Owner: r.Owner, Finding: kind, Before: r.Text, Trade: Trade, from: r.NAT,
		}
		c.to = r.NAT
		c.to.FullyRandom = true
		c.From, c.To = c.from.String(), c.to.String()
		switch r.Backend {
		case ruleset.Nftables:
			c.Method = MethodNetlink
			c.After = nftAfter(r.Text, c.from, c.to)
		case ruleset.IptablesNft:
			c.Method = opts.IptablesNft
			if c.Method == "" {
				c.Method = MethodNetlink
			}
			c.After = IptablesAfter(r.Text)
		case ruleset.IptablesLegacy:
			c.Method = MethodRestore
			c.After = IptablesAfter(r.Text)
		default:
			skip(fmt.Sprintf("backend %s (from a dump that does not say which iptables): audit the host live to fix it", r.Backend))
			continue
		}
		if c.Method == MethodNetlink && r.Handle == 0 {
			skip("no nftables handle (read from a dump without handles): fix it on the live host")
			continue
		}
		p.Changes = append(p.Changes, c)
	}
	return p
}

// HasChanges reports whether the plan changes anything.
func (p *Plan) HasChanges() bool { return len(p.Changes) > 0 }

// nftAfter renders the nft rule text after the change: the NAT statement
// with the new flags in place of the old.
func nftAfter(text string, from, to natrule.Mode) string {
	old, neu := from.String(), to.String()
	region := text
	if i := strings.LastIndex(text, ` comment "`); i >= 0 {
		region = text[:i] // a comment may quote anything
	}
	if i := strings.LastIndex(region, old); i >= 0 {
		return text[:i] + neu + text[i+len(old):]
	}
	return text + " # " + neu
}

// IptablesAfter returns an iptables-save rule line with --random-fully added
// where iptables-save itself prints it: after --random and before
// --persistent (SNAT), at the end otherwise.
func IptablesAfter(line string) string {
	if strings.HasSuffix(line, " --random-fully") || strings.Contains(line, " --random-fully --") {
		return line
	}
	// Target options follow the last -j; matches (and comments) precede it.
	j := strings.LastIndex(line, " -j ")
	if j < 0 {
		j = 0
	}
	if i := strings.Index(line[j:]+" ", " --persistent "); i >= 0 {
		return line[:j+i] + " --random-fully" + line[j+i:]
	}
	return line + " --random-fully"
}

// modes returns the change's NAT mode before and after, parsing From and To
// when the change came from a JSON plan.
func (c *Change) modes() (natrule.Mode, natrule.Mode, error) {
	if c.to.Action != natrule.None {
		return c.from, c.to, nil
	}
	from, err := natrule.ParseMode(c.From)
	if err != nil {
		return from, from, fmt.Errorf("%s: from: %w", c.Key(), err)
	}
	to, err := natrule.ParseMode(c.To)
	if err != nil {
		return from, to, fmt.Errorf("%s: to: %w", c.Key(), err)
	}
	return from, to, nil
}

// Check validates a plan read from JSON (snatrace fix --json > plan.json)
// before it is applied.
func (p *Plan) Check() error {
	for i := range p.Changes {
		c := &p.Changes[i]
		from, to, err := c.modes()
		if err != nil {
			return err
		}
		if !to.FullyRandom || from.Action != to.Action {
			return fmt.Errorf("%s: %q -> %q is not a change to fully-random", c.Key(), c.From, c.To)
		}
		c.from, c.to = from, to
		switch c.Method {
		case MethodNetlink:
			if c.Handle == 0 || c.Backend == ruleset.IptablesLegacy {
				return fmt.Errorf("%s: a netlink change needs an nftables rule handle", c.Key())
			}
		case MethodRestore:
			if c.Backend == ruleset.Nftables || !strings.HasPrefix(c.After, "-A "+c.Chain+" ") {
				return fmt.Errorf("%s: an iptables-restore change needs an iptables rule line", c.Key())
			}
		default:
			return fmt.Errorf("%s: unknown method %q", c.Key(), c.Method)
		}
		if c.Position < 1 {
			return fmt.Errorf("%s: bad position %d", c.Key(), c.Position)
		}
	}
	return nil
}
