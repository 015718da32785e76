package fix

import (
	"errors"
	"fmt"
	"strings"

	"github.com/snatrace/snatrace/audit"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/ruleset"
	"github.com/snatrace/snatrace/tsoffset"
)

// Method is how a change reaches the kernel.
type Method string

const (
	// MethodNetlink replaces nftables rules (native and iptables-nft) by
	// handle in one netlink batch guarded by the ruleset generation.
	MethodNetlink Method = "netlink"
	// MethodRestore replaces iptables rules at their position with their
	// fully-random line ("-R CHAIN N", iptables-restore --noflush -w),
	// guarded by a checksum of the chain; iptables-legacy's nat tables
	// get the same change in the kernel's table directly (Config.LegacyText
	// says otherwise).
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
	ruleset.Location
	Owner ruleset.Owner `json:"owner"`
	// Finding is the audit finding that selected the rule.
	Finding audit.Kind `json:"finding"`
	Method  Method     `json:"method"`
	From    string     `json:"from"` // NAT statement before ("masquerade")
	To      string     `json:"to"`   // and after ("masquerade fully-random")
	Before  string     `json:"before"`
	After   string     `json:"after"`
	Trade   string     `json:"trade"`
}

// Skipped is a flagged rule the plan leaves alone, and why.
type Skipped struct {
	ruleset.Location
	Owner  ruleset.Owner `json:"owner"`
	Rule   string        `json:"rule"`
	Reason string        `json:"reason"`
}

func skippedOf(l ruleset.Location, owner ruleset.Owner, rule, reason string) Skipped {
	return Skipped{Location: l, Owner: owner, Rule: rule, Reason: reason}
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
	// PAWS is the cost fully-random has on a kernel with per-port TCP
	// timestamp offsets, and the alternatives (nil elsewhere).
	PAWS *PAWSNote `json:"paws,omitempty"`

	// saves are the iptables-save tables the checksums were taken from, by
	// restore group; ApplyFresh reuses them instead of saving again.
	saves map[string]*SaveTable
	// read is the ruleset the plan was made from (nil for a plan read
	// from a file): its scope tells a watch which commits can matter.
	read *ruleset.Ruleset
	// lockHeld says the xtables lock was held since before the read and
	// still is (Config.HoldLock): the apply neither takes it nor reads the
	// legacy tables again.
	lockHeld bool
}

// ChainID names the iptables chain of l in Plan.Chains: "iptables-legacy ip nat POSTROUTING".
func ChainID(l ruleset.Location) string {
	return fmt.Sprintf("%s %s %s %s", l.Backend, l.Family, l.Table, l.Chain)
}

// Options for MakePlan.
type Options struct {
	Scope Scope
	// IptablesNft is how iptables-nft rules are changed: MethodNetlink (the
	// default, atomic with the native rules) or MethodRestore.
	IptablesNft Method
	// Kernel is the kernel release audit judges against ("" unknown).
	Kernel string
	// TSOffsets says how the kernel offsets TCP timestamps; MakePlan
	// calls it only for a plan with changes, which on a per-port kernel
	// carries a PAWSNote. nil, or a nil result, is not known. It may
	// wait for a probe started earlier (cmd/snatrace starts one beside
	// the fix's read).
	TSOffsets func() *tsoffset.Detection
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
		c, why := changeOf(r, kind, opts)
		if why != "" {
			p.Skipped = append(p.Skipped, skippedOf(r.Location, r.Owner, r.Text, why))
			continue
		}
		p.Changes = append(p.Changes, c)
	}
	notePAWS(p, opts.TSOffsets)
	return p
}

// changeOf is the change that makes r fully-random, or why there is none.
func changeOf(r *ruleset.Rule, kind audit.Kind, opts Options) (Change, string) {
	if why := opts.Scope.why(r); why != "" {
		return Change{}, why
	}
	to := r.NAT
	to.FullyRandom = true
	c := Change{Location: r.Location, Owner: r.Owner, Finding: kind, Before: r.Text, Trade: Trade, From: r.NAT.String(), To: to.String()}
	switch r.Backend {
	case natrule.Nftables:
		c.Method = MethodNetlink
		c.After = nftAfter(r.Text, r.NAT, to)
	case natrule.IptablesNFT:
		c.Method = opts.IptablesNft
		if c.Method == "" {
			c.Method = MethodNetlink
		}
		c.After = IptablesAfter(r.Text)
	case natrule.IptablesLegacy:
		c.Method = MethodRestore
		c.After = IptablesAfter(r.Text)
	default:
		return Change{}, fmt.Sprintf("backend %s (from a dump that does not say which iptables): audit the host live to fix it", r.Backend)
	}
	if c.Method == MethodNetlink && r.Handle == 0 {
		return Change{}, "no nftables handle (read from a dump without handles): fix it on the live host"
	}
	return c, ""
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

// Check validates a plan read from a file (snatrace fix --json > plan.json)
// before anything else looks at it: every change a fully-random change of a
// MASQUERADE/SNAT rule at a valid location, its after exactly what snatrace
// computes from its before, no control character anywhere. A plan that
// fails is ErrTampered. Check does not read the kernel: ApplySaved also
// checks each change against a fresh plan.
func (p *Plan) Check() error {
	for i := range p.Changes {
		if err := p.Changes[i].check(); err != nil {
			return fmt.Errorf("change %d (%s): %w: %w", i+1, p.Changes[i].Key(), ErrTampered, err)
		}
	}
	return nil
}

func (c *Change) check() error {
	if err := c.Location.Check(); err != nil {
		return err
	}
	if err := printable(c.From, c.To, c.Before, c.After, string(c.Owner), string(c.Finding), c.Trade); err != nil {
		return err
	}
	from, err := natrule.ParseMode(c.From)
	if err != nil {
		return fmt.Errorf("from: %w", err)
	}
	to := from
	to.FullyRandom = true
	if from.Action == natrule.None || from.FullyRandom || c.To != to.String() {
		return fmt.Errorf("%q -> %q is not the change to fully-random", c.From, c.To)
	}
	switch c.Method {
	case MethodNetlink:
		if c.Handle == 0 || c.Backend == natrule.IptablesLegacy {
			return errors.New("a netlink change needs an nftables rule handle")
		}
		if c.Backend == natrule.IptablesNFT && c.Table != "nat" {
			return fmt.Errorf("table %q: iptables source NAT lives in table nat", c.Table)
		}
	case MethodRestore:
		return checkRestore(c.Location, c.Before, c.After)
	default:
		return fmt.Errorf("unknown method %q", c.Method)
	}
	return nil
}

// checkRestore checks a change through iptables-restore: an iptables rule,
// and an after that is exactly the before with --random-fully.
func checkRestore(l ruleset.Location, before, after string) error {
	if l.Backend == natrule.Nftables {
		return errors.New("native nftables rules are not changed through iptables-restore")
	}
	if l.Table != "nat" {
		return fmt.Errorf("table %q: iptables source NAT lives in table nat", l.Table)
	}
	if err := checkIptablesLine(before, l.Chain); err != nil {
		return err
	}
	if after != IptablesAfter(before) {
		return fmt.Errorf("after %q is not %q with --random-fully", clip(after), clip(before))
	}
	return nil
}

// checkIptablesLine accepts one iptables-save line of chain whose target is
// MASQUERADE or SNAT, and nothing that could change another table.
func checkIptablesLine(line, chain string) error {
	rest, ok := strings.CutPrefix(line, "-A "+chain+" ")
	if !ok {
		return fmt.Errorf("rule %q is not an iptables-save line of chain %s", clip(line), chain)
	}
	f := strings.Fields(rest)
	target := ""
	for i, w := range f {
		switch w {
		case "-t", "--table", "-A", "--append", "-I", "-D", "-R", "-F", "-X", "-N", "-P":
			return fmt.Errorf("rule %q has %s inside it", clip(line), w)
		case "-j", "--jump":
			if i+1 < len(f) {
				target = f[i+1]
			}
		}
	}
	if target != "MASQUERADE" && target != "SNAT" {
		return fmt.Errorf("rule %q is not a MASQUERADE or SNAT rule", clip(line))
	}
	return nil
}

// printable fails on any control character (a newline would smuggle a
// second restore command).
func printable(ss ...string) error {
	for _, s := range ss {
		if i := strings.IndexFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }); i >= 0 {
			return fmt.Errorf("control character %q in %q", s[i], clip(s))
		}
	}
	return nil
}
