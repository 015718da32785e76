package audit

import (
	"fmt"

	"github.com/snatrace/snatrace/ruleset"
)

// ownerRemedies says, per owner, how to get fully-random source NAT through
// that owner's own configuration, or that it has no knob (then snatrace fix).
// Keep it next to the owner signatures' ids: one entry per ruleset.Owner.
var ownerRemedies = map[ruleset.Owner]string{
	ruleset.Docker: "Docker has no setting for --random-fully (iptables or nftables backend): run `snatrace fix --owner docker --apply --watch` " +
		"to make its MASQUERADE rules fully-random and keep them so when dockerd rewrites them",
	ruleset.Netavark: "netavark (Podman) has no option for fully-random masquerade: run `snatrace fix --owner netavark --apply --watch`",
	ruleset.Libvirt: "libvirt's network XML has no fully-random option for <nat> (<port> changes only the range), in its iptables or its nftables (10.4+) backend: " +
		"run `snatrace fix --owner libvirt --apply --watch` (libvirt rewrites the rules when a network starts)",
	ruleset.KubeProxy: "kube-proxy adds --random-fully to its KUBE-POSTROUTING MASQUERADE by itself when the iptables in its image supports it (1.6.2+); " +
		"a rule without it means an old iptables in the kube-proxy image or on the node: upgrade it, or use kube-proxy's nftables mode (masquerade fully-random); " +
		"meanwhile `snatrace fix --owner kube-proxy --apply --watch`",
	ruleset.Flannel: "flannel writes --random-fully when its iptables supports it: upgrade flannel (and the iptables in its image); " +
		"meanwhile `snatrace fix --owner flannel --apply --watch`",
	ruleset.Calico: "Calico (Felix) uses --random-fully when feature detection finds it; check the iptables version Felix detects and " +
		"FelixConfiguration featureDetectOverride (MASQFullyRandom=true) if detection is wrong",
	ruleset.Cilium:    "Cilium: set the Helm value iptablesRandomFully=true, or use eBPF masquerading (bpf.masquerade=true), which does not use these rules",
	ruleset.AWSVPCCNI: "AWS VPC CNI: set AWS_VPC_K8S_CNI_RANDOMIZESNAT=prng on the aws-node DaemonSet (prng gives --random-fully; hashrandom only --random, none nothing)",
	ruleset.IPMasqAgent: "ip-masq-agent writes --random-fully from v2.10.0 (flag --random-fully, default true, from v2.11.0): upgrade it and do not set --random-fully=false " +
		"(GKE/AKS manage the agent: use a node version that ships one)",
	ruleset.Weave: "Weave Net has no option for fully-random masquerade (and is no longer maintained): run `snatrace fix --owner weave --apply --watch`, or move to a maintained CNI",
	ruleset.Antrea: "Antrea 2.2+: set snatFullyRandomPorts: true in the agent configuration (Helm value snatFullyRandomPorts; egress.snatFullyRandomPorts for Egress SNAT); " +
		"older Antrea has no option: `snatrace fix --owner antrea --apply --watch`",
	ruleset.KubeRouter: "kube-router adds --random-fully to its pod egress MASQUERADE when the iptables it runs supports it: upgrade kube-router and its iptables; " +
		"meanwhile `snatrace fix --owner kube-router --apply --watch`",
	ruleset.K3s: "k3s ServiceLB (klipper-lb) has no option for fully-random: disable it (--disable=servicelb) for a load balancer that keeps client addresses, " +
		"or run `snatrace fix --netns <svclb pod> --apply`",
	ruleset.CNI: "the CNI bridge (ipMasq) and portmap (snat) plugins have no fully-random option, in their iptables or nftables backends: " +
		"run `snatrace fix --owner cni --apply --watch` (they write a rule per container, so the watch matters)",
	ruleset.Firewalld: "firewalld has no fully-random option for a zone's or policy's masquerade: run `snatrace fix --owner firewalld --apply --watch` " +
		"(firewall-cmd --reload and every zone change rewrite its rules)",
	ruleset.Unknown: "change the rule to use --random-fully (iptables) or fully-random (nft) where it is written, or run `snatrace fix --apply`",
}

// Remedy returns the remedy for a finding of kind about rule r, in the words
// of r's owner.
func Remedy(r *ruleset.Rule, kind Kind) string {
	switch kind {
	case KindSinglePort, KindNarrowPorts:
		return fmt.Sprintf("widen the rule's source port range (%s) to thousands of ports, or drop it to use the whole range; with a narrow range even fully-random collides", r.Ports())
	case KindFlagsUnknown:
		return "run `snatrace audit` on the host (or give it iptables-save / nft list ruleset output) to see the flags"
	case KindUnreachable:
		return fmt.Sprintf("nothing to fix while no NAT hook reaches chain %s; if its owner meant it to run, the jump into it is missing (and the rule, once reached, is judged like any other)", r.Chain)
	}
	if s, ok := ownerRemedies[r.Owner]; ok {
		return s
	}
	return ownerRemedies[ruleset.Unknown]
}
