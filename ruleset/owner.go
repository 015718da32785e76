package ruleset

import "regexp"

// Owner is the software that installed a rule, as a stable id for JSON and
// for `snatrace fix --owner`.
type Owner string

// Owner ids. A rule that k3s's embedded kube-proxy or flannel wrote is
// KubeProxy or Flannel; K3s is for what k3s writes itself (ServiceLB).
const (
	Docker      Owner = "docker"
	Netavark    Owner = "netavark"
	Libvirt     Owner = "libvirt"
	KubeProxy   Owner = "kube-proxy"
	Flannel     Owner = "flannel"
	Calico      Owner = "calico"
	Cilium      Owner = "cilium"
	AWSVPCCNI   Owner = "aws-vpc-cni"
	IPMasqAgent Owner = "ip-masq-agent"
	Weave       Owner = "weave"
	Antrea      Owner = "antrea"
	KubeRouter  Owner = "kube-router"
	K3s         Owner = "k3s"
	CNI         Owner = "cni" // the CNI reference plugins: bridge ipMasq, portmap
	Firewalld   Owner = "firewalld"
	Unknown     Owner = "unknown"
)

// Owners returns every owner id, Unknown last.
func Owners() []Owner {
	return []Owner{Docker, Netavark, Libvirt, KubeProxy, Flannel, Calico, Cilium,
		AWSVPCCNI, IPMasqAgent, Weave, Antrea, KubeRouter, K3s, CNI, Firewalld, Unknown}
}

// ParseOwner returns the Owner named s, or false.
func ParseOwner(s string) (Owner, bool) {
	for _, o := range Owners() {
		if string(o) == s {
			return o, true
		}
	}
	return "", false
}

// IsPodTraffic reports whether o's NAT rules cover pod or container traffic,
// where many clients share few destinations and the race bites hardest.
func (o Owner) IsPodTraffic() bool {
	switch o {
	case Unknown, Libvirt, Firewalld:
		return false
	}
	return true
}

// signature is one way to recognise an owner's rule. Every condition that is
// set must hold; the first signature in the table that matches wins.
type signature struct {
	owner   Owner
	variant string // "iptables", "ipvs", "nftables", ... for the evidence
	// table matches the table name (nftables tables are named by their owner).
	table *regexp.Regexp
	// chain matches the rule's chain.
	chain *regexp.Regexp
	// comment matches the rule's comment, or the comment of a jump into the
	// rule's chain.
	comment *regexp.Regexp
	// match matches the rule's match summary (iptables or nft syntax).
	match *regexp.Regexp
	// text matches the rule's whole text.
	text *regexp.Regexp
	// sibling matches the name of another chain of the same table.
	sibling *regexp.Regexp
	// plain requires a table without chains of any known owner.
	plain bool
	// why is the evidence, shown to the user.
	why string
}

var re = regexp.MustCompile

// signatures is the owner table. Keep it in one place: every owner's test
// dump under testdata/owners/ must be attributed by exactly these entries.
// Order matters: specific signatures come before shape-only ones.
var signatures = []signature{
	// kube-proxy: KUBE-POSTROUTING masquerades marked service traffic (0x4000).
	{owner: KubeProxy, variant: "ipvs", chain: re(`^KUBE-POSTROUTING$`), match: re(`KUBE-LOOP-BACK`),
		why: "chain KUBE-POSTROUTING with the KUBE-LOOP-BACK ipset (kube-proxy ipvs mode)"},
	{owner: KubeProxy, variant: "iptables", chain: re(`^KUBE-POSTROUTING$`),
		why: "chain KUBE-POSTROUTING (kube-proxy iptables mode)"},
	{owner: KubeProxy, variant: "iptables", comment: re(`^kubernetes service traffic requiring SNAT$`),
		why: `comment "kubernetes service traffic requiring SNAT"`},
	{owner: KubeProxy, variant: "nftables", table: re(`^kube-proxy$`),
		why: "table kube-proxy (kube-proxy nftables mode)"},
	// flannel: FLANNEL-POSTRTG, every rule commented "flanneld masq".
	{owner: Flannel, variant: "nftables", table: re(`^flannel-ipv[46]$`),
		why: "table flannel-ipv4/flannel-ipv6 (flannel nftables mode)"},
	{owner: Flannel, chain: re(`^FLANNEL-POSTRTG$`), why: "chain FLANNEL-POSTRTG"},
	{owner: Flannel, comment: re(`^flanneld masq$`), why: `comment "flanneld masq"`},
	// Calico: cali-nat-outgoing with cali: rule ids and cali40masq-ipam-pools.
	{owner: Calico, variant: "nftables", table: re(`^calico$`), why: "table calico (Calico nftables dataplane)"},
	{owner: Calico, chain: re(`^cali-`), why: "chain cali-nat-outgoing (Calico natOutgoing)"},
	{owner: Calico, comment: re(`^cali:`), why: "comment cali:<rule id>"},
	// Cilium (iptables masquerading): CILIUM_POST_nat.
	{owner: Cilium, chain: re(`^CILIUM_`), why: "chain CILIUM_POST_nat (Cilium iptables masquerading)"},
	{owner: Cilium, comment: re(`^cilium`), why: `comment "cilium masquerade ..."`},
	// AWS VPC CNI: AWS-SNAT-CHAIN-0/1, comment "AWS, SNAT".
	{owner: AWSVPCCNI, chain: re(`^AWS-SNAT-CHAIN-`), why: "chain AWS-SNAT-CHAIN-* (AWS VPC CNI external SNAT)"},
	{owner: AWSVPCCNI, comment: re(`^AWS, SNAT`), why: `comment "AWS, SNAT"`},
	{owner: AWSVPCCNI, chain: re(`^AWS-CONNMARK-CHAIN-`), why: "chain AWS-CONNMARK-CHAIN-*"},
	// ip-masq-agent (GKE, AKS): IP-MASQ-AGENT.
	{owner: IPMasqAgent, chain: re(`^IP-MASQ-AGENT$`), why: "chain IP-MASQ-AGENT"},
	{owner: IPMasqAgent, comment: re(`^ip-masq-agent`), why: `comment "ip-masq-agent: ..."`},
	// Weave Net: WEAVE chain.
	{owner: Weave, chain: re(`^WEAVE$`), why: "chain WEAVE"},
	// Antrea: ANTREA-POSTROUTING.
	{owner: Antrea, chain: re(`^ANTREA-`), why: "chain ANTREA-POSTROUTING"},
	{owner: Antrea, comment: re(`^Antrea:`), why: `comment "Antrea: ..."`},
	{owner: Antrea, variant: "nftables", table: re(`^antrea$`), why: "table antrea"},
	// kube-router: pod egress masquerade matches its ipsets.
	{owner: KubeRouter, match: re(`kube-router-pod-subnets|kube-router-node-ips`), why: "ipsets kube-router-pod-subnets / kube-router-node-ips (kube-router pod egress)"},
	{owner: KubeRouter, chain: re(`^KUBE-ROUTER-`), why: "chain KUBE-ROUTER-*"},
	{owner: KubeRouter, variant: "ipvs", match: re(`-m ipvs --vdir ORIGINAL --vmethod MASQ`),
		why: "match -m ipvs --vdir ORIGINAL --vmethod MASQ (kube-router's IPVS service proxy; kube-proxy's ipvs mode does not write it)"},
	{owner: KubeRouter, comment: re(`(?i)kube-router`), why: `comment "kube-router ..."`},
	// Podman: netavark chains and table; CNI-era Podman labels its rules.
	{owner: Netavark, variant: "nftables", table: re(`^netavark$`), why: "table netavark (netavark nftables driver)"},
	{owner: Netavark, chain: re(`^NETAVARK-`), why: "chain NETAVARK-* (netavark iptables driver)"},
	{owner: Netavark, comment: re(`^netavark`), why: `comment "netavark ..."`},
	{owner: Netavark, variant: "cni", comment: re(`^name: "podman"`), why: `comment name: "podman" (Podman with CNI)`},
	// libvirt: LIBVIRT_PRT (5.1+), table libvirt_network (9.x nftables
	// backend), or the classic shape in POSTROUTING.
	{owner: Libvirt, chain: re(`^LIBVIRT_`), why: "chain LIBVIRT_PRT"},
	{owner: Libvirt, variant: "nftables", table: re(`^libvirt_network$`), why: "table libvirt_network (libvirt nftables backend)"},
	{owner: Libvirt, chain: re(`^POSTROUTING$`), text: re(`-p (tcp|udp) .*-j MASQUERADE --to-ports 1024-65535$`), plain: true,
		why: "MASQUERADE --to-ports 1024-65535 per protocol (libvirt before 5.1)"},
	// Docker: table docker-bridges (nftables backend), or "! -o docker0/br-*".
	{owner: Docker, variant: "nftables", table: re(`^docker-bridges$`), why: "table docker-bridges (Docker nftables backend)"},
	{owner: Docker, match: re(`(! -o |oifname != "?)(docker0|docker_gwbridge|br-[0-9a-f]{12})\b`),
		why: "masquerade of a Docker bridge subnet leaving by another interface (! -o docker0/br-*)"},
	// A bridge of any name (com.docker.network.bridge.name): the shape,
	// next to chain DOCKER.
	{owner: Docker, chain: re(`^POSTROUTING$`), match: re(`^-s \S+ ! -o \S+$`), sibling: re(`^DOCKER$`),
		why: "masquerade of a bridge subnet leaving by another interface (-s SUBNET ! -o BRIDGE), next to chain DOCKER: a Docker network with its own bridge name"},
	// Hairpin of a bridge's own traffic when the userland proxy is off
	// (--userland-proxy=false): -o BRIDGE -m addrtype --src-type LOCAL.
	{owner: Docker, chain: re(`^POSTROUTING$`), match: re(`^-o \S+ -m addrtype --src-type LOCAL$`), sibling: re(`^DOCKER$`),
		why: "masquerade of local traffic into a bridge (-o BRIDGE --src-type LOCAL), next to chain DOCKER: Docker with the userland proxy off"},
	// The same two as nft lists them (iptables-nft rules read from an nft
	// dump: nft text, or nft -j where addrtype stays an xt match).
	{owner: Docker, chain: re(`^POSTROUTING$`), match: re(`^(oifname != "?[^" ]+"? ip saddr \S+|ip saddr \S+ oifname != "?[^" ]+"?)$`), sibling: re(`^DOCKER$`),
		why: "masquerade of a bridge subnet leaving by another interface (ip saddr SUBNET oifname != BRIDGE), next to chain DOCKER: a Docker network with its own bridge name"},
	{owner: Docker, chain: re(`^POSTROUTING$`), match: re(`^oifname "?[^" ]+"? (fib saddr type local|xt match addrtype)$`), sibling: re(`^DOCKER$`),
		why: "masquerade of local traffic into a bridge (oifname BRIDGE fib saddr type local), next to chain DOCKER: Docker with the userland proxy off"},
	{owner: Docker, chain: re(`^POSTROUTING$`), match: re(`^-s (\S+)/32 -d (\S+)/32 -p (tcp|udp|sctp) -m (tcp|udp|sctp) --dport \d+$`), sibling: re(`^DOCKER$`),
		why: "hairpin masquerade of a published port, next to chain DOCKER"},
	{owner: Docker, chain: re(`^POSTROUTING$`), match: re(`^ip saddr (\S+) ip daddr (\S+) (tcp|udp|sctp) dport \d+$`), sibling: re(`^DOCKER$`),
		why: "hairpin masquerade of a published port, next to chain DOCKER"},
	// k3s ServiceLB (klipper-lb) pods: DNAT to a service and masquerade it.
	{owner: K3s, variant: "servicelb", chain: re(`^POSTROUTING$`), match: re(`^-d \S+/32 -p (tcp|udp|sctp)$`),
		why: "klipper-lb shape: POSTROUTING -d <service ip>/32 -p <proto> -j MASQUERADE (k3s ServiceLB)"},
	{owner: K3s, comment: re(`(?i)\bk3s\b|klipper`), why: "comment names k3s"},
	// The CNI reference plugins, as containerd, nerdctl, CRI-O, k3s and
	// bridge-based clusters invoke them (Podman-with-CNI is above).
	{owner: CNI, variant: "portmap", chain: re(`^CNI-HOSTPORT-MASQ$`), why: "chain CNI-HOSTPORT-MASQ (CNI portmap plugin, snat)"},
	{owner: CNI, variant: "bridge", chain: re(`^CNI-[0-9a-f]{24}$`), why: "chain CNI-<hash of network and container> (CNI bridge plugin, ipMasq)"},
	{owner: CNI, variant: "bridge", comment: re(`^name: ".*" id: ".*"$`), why: `comment name: "<network>" id: "<container>" (CNI bridge plugin, ipMasq)`},
	{owner: CNI, variant: "bridge-nftables", table: re(`^cni_plugins_masquerade$`), why: "table cni_plugins_masquerade (CNI bridge plugin, ipMasqBackend nftables)"},
	{owner: CNI, variant: "portmap-nftables", table: re(`^cni_hostport$`), why: "table cni_hostport (CNI portmap plugin, nftables backend)"},
	// firewalld: zone and policy masquerade.
	{owner: Firewalld, variant: "nftables", table: re(`^firewalld$`), why: "table firewalld (firewalld nftables backend: zone or policy masquerade)"},
	{owner: Firewalld, variant: "iptables", chain: re(`^POST_[A-Za-z0-9_-]+$`), sibling: re(`^POSTROUTING_ZONES$`),
		why: "chain POST_<zone>_allow next to POSTROUTING_ZONES (firewalld iptables backend)"},
	{owner: Firewalld, variant: "iptables", chain: re(`^POST_[A-Za-z0-9_-]+_allow$`), match: re(`^! -o lo$`),
		why: "masquerade ! -o lo in chain POST_<zone>_allow (firewalld iptables backend)"},
}

// Attribute sets Owner and OwnerEvidence of every rule in rs from the
// signature table.
func Attribute(rs *Ruleset) {
	// The chains of the NAT rules' tables, listed the first time a
	// signature asks (most rules match one that does not): a kube-proxy
	// table has 36,000, which a watch would otherwise list every round.
	var siblings map[ownerTable][]string
	siblingsOf := func(k ownerTable) []string {
		if siblings == nil {
			siblings = natTableChains(rs)
		}
		return siblings[k]
	}
	type ckey struct {
		ownerTable
		chain string
	}
	// Comments of the jumps into the NAT rules' chains (only those: a
	// kube-proxy dump has 1e5 other jumps).
	jumpComments := map[ckey][]string{}
	for _, r := range rs.Rules {
		jumpComments[ckey{ownerTable{r.Backend, r.Family, r.Table}, r.Chain}] = nil
	}
	for _, j := range rs.Jumps {
		if j.Comment == "" {
			continue
		}
		k := ckey{ownerTable{j.Backend, j.Family, j.Table}, j.To}
		if c, ok := jumpComments[k]; ok {
			jumpComments[k] = append(c, j.Comment)
		}
	}
	for i := range rs.Rules {
		r := &rs.Rules[i]
		tk := ownerTable{r.Backend, r.Family, r.Table}
		r.Owner, r.OwnerEvidence = Unknown, "no owner signature matches table "+r.Table+", chain "+r.Chain+" and this rule's shape"
		for _, s := range signatures {
			if s.matches(r, func() []string { return siblingsOf(tk) }, jumpComments[ckey{tk, r.Chain}]) {
				r.Owner, r.OwnerEvidence = s.owner, s.why
				break
			}
		}
	}
}

// ownerTable is a table as Attribute tells tables apart.
type ownerTable struct {
	b     Backend
	f     Family
	table string
}

// natTableChains lists the names of the chains of every table that holds
// one of rs's rules. Chains come table by table, so a table is looked up
// once per run of its chains, not once per chain.
func natTableChains(rs *Ruleset) map[ownerTable][]string {
	out := map[ownerTable][]string{}
	for _, r := range rs.Rules {
		out[ownerTable{r.Backend, r.Family, r.Table}] = nil
	}
	var (
		cur   ownerTable
		names []string
		in    bool
	)
	for i := range rs.Chains {
		c := &rs.Chains[i]
		k := ownerTable{c.Backend, c.Family, c.Table}
		if i == 0 || k != cur {
			if in {
				out[cur] = names
			}
			cur = k
			names, in = out[k]
		}
		if in {
			names = append(names, c.Name)
		}
	}
	if in {
		out[cur] = names
	}
	return out
}

// matches reports whether r has s's shape; siblings lists the chains of
// r's table, asked for only when s looks at them.
func (s *signature) matches(r *Rule, siblings func() []string, jumpComments []string) bool {
	if s.table != nil && !s.table.MatchString(r.Table) {
		return false
	}
	if s.chain != nil && !s.chain.MatchString(r.Chain) {
		return false
	}
	if s.match != nil && !s.match.MatchString(r.Match) {
		return false
	}
	if s.text != nil && !s.text.MatchString(r.Text) {
		return false
	}
	if s.comment != nil {
		ok := s.comment.MatchString(r.Comment)
		for _, c := range jumpComments {
			ok = ok || s.comment.MatchString(c)
		}
		if !ok {
			return false
		}
	}
	if s.sibling != nil {
		ok := false
		for _, c := range siblings() {
			ok = ok || s.sibling.MatchString(c)
		}
		if !ok {
			return false
		}
	}
	if s.plain && hasOwnerChain(siblings()) {
		return false
	}
	return true
}

// ownerChains matches chain names that belong to a known owner; a table that
// has none is a plain host table.
var ownerChains = re(`^(KUBE-|FLANNEL|cali-|CILIUM_|AWS-|IP-MASQ|WEAVE|ANTREA|NETAVARK|DOCKER|CNI-)`)

func hasOwnerChain(chains []string) bool {
	for _, c := range chains {
		if ownerChains.MatchString(c) {
			return true
		}
	}
	return false
}

// Variant returns the owner variant ("ipvs", "nftables") recorded in the
// evidence of r, or "".
func Variant(r *Rule) string {
	for _, s := range signatures {
		if s.owner == r.Owner && s.why == r.OwnerEvidence {
			return s.variant
		}
	}
	return ""
}
