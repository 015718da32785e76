#!/usr/bin/env python3
"""Curates the public excerpts in this directory into ../ (ruleset/testdata/
corpus): each file keeps its provenance header; the body is made into a dump
snatrace reads (mechanical cleanup, or the owner's commands run with the real
iptables and nft in a throwaway namespace, snt-curate). Needs root:

    sudo python3 ruleset/testdata/corpus/src/curate.py
"""
import os, re, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = HERE                       # the excerpts as collected, with their provenance
DST = os.path.dirname(HERE)      # the dumps TestCorpus reads
NS = "snt-curate"

def sh(cmd, stdin=None):
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("%s: %s %s" % (cmd, r.stdout, r.stderr))
    return r.stdout

def fresh_ns():
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    sh(["ip", "netns", "add", NS])

def inns(*cmd, stdin=None):
    return sh(["ip", "netns", "exec", NS] + list(cmd), stdin)

def untime(s):
    return "\n".join(l for l in s.split("\n") if not l.startswith("# Generated") and not l.startswith("# Completed")) 

def read(name):
    head, body = [], []
    for l in open(os.path.join(SRC, name + ".txt")):
        (head if l.startswith("# ") and not body else body).append(l.rstrip("\n"))
    return head, body

def write(name, ext, head, body, want, how):
    with open(os.path.join(DST, name + "." + ext), "w") as f:
        for l in head:
            if l.startswith("# expect:") or l.startswith("#   ") or l.startswith("#         ") or l.startswith("# excerpt:"):
                continue
            f.write(l + "\n")
        f.write("# curated: " + how + "\n")
        f.write("# want: " + want + "\n")
        f.write("\n".join(body).rstrip("\n") + "\n")

def cut_truncated(body):
    out = []
    for l in body:
        if "[truncated]" in l:
            break
        out.append(l)
    return out

def main():
    os.makedirs(DST, exist_ok=True)
    # verbatim, parseable as they are
    for name, ext, want in [
        ("calico-1", "S", "calico=2 fully-random=2"),
        ("docker-1", "iptables-save", "docker=3 fully-random=0"),
        ("docker-2", "nft", "docker=3 fully-random=0"),
        ("docker-3", "iptables-save", "docker=1 fully-random=0"),
        ("docker-4", "iptables-save", "docker=2 fully-random=0"),
        ("netavark-1", "S", "netavark=1 fully-random=0"),
        ("kube-proxy-2", "S", "kube-proxy=1 unknown=1 fully-random=1"),
        ("firewalld-3", "list", "firewalld=1 fully-random=0"),
        ("flannel-1", "S", "rules=0"),
    ]:
        head, body = read(name)
        write(name, ext, head, body, want, "verbatim")
    # mechanical cleanups
    head, body = read("antrea-1")
    write("antrea-1", "iptables-save", head, body[1:], "antrea=4 fully-random=2", "the excerpt's first line (the COMMIT of the table before) dropped")
    head, body = read("calico-2")
    body = [re.sub(r"^  # ", "", l) for l in body]
    body = [l for l in body if l.startswith("-A ")]
    write("calico-2", "S", head, body, "calico=1 fully-random=0", 'the log\'s "  # " prefix and the COMMIT/Completed lines dropped: the -A lines read as iptables -S')
    head, body = read("cilium-1")
    first = []
    for l in body:
        m = re.match(r"^\d+\. (-A .*)$", l)
        if m:
            if first and l.startswith("1. "):
                break
            first.append(m.group(1))
    write("cilium-1", "S", head, first, "cilium=3 fully-random=0", 'the first chain of the PR text, list numbering ("1. ") dropped')
    head, body = read("cni-1")
    write("cni-1", "list", head, cut_truncated(body), "cni=1 fully-random=0", "cut before the excerpt's truncated chain")
    head, body = read("cni-2")
    body = cut_truncated([re.sub(r"^> ", "", l) for l in body])
    write("cni-2", "S", head, body, "unknown=2 fully-random=2", 'the "> " quote prefix dropped, cut before the truncated line. The two uncommented MASQUERADE rules are flannel < 0.16.2\'s, but that shape (-s POD_CIDR ! -d 224.0.0.0/4 in POSTROUTING) is also anyone\'s: unknown, not a guess')
    head, body = read("k3s-2")
    body = cut_truncated(body[1:])
    body = body[next(i for i, l in enumerate(body) if l.startswith("Chain ")):]
    write("k3s-2", "list", head, body, "kube-proxy=1 fully-random=1", "the excerpt's partial first chain (from [truncated] to the first whole Chain line) and everything from the next truncated chain dropped")
    head, body = read("netavark-4")
    write("netavark-4", "list", head, cut_truncated(body), "docker=1 fully-random=0", "cut before the excerpt's truncated chain")
    head, body = read("firewalld-2")
    body = body[1:]
    # the excerpt starts inside a chain of table inet firewalld: keep from the first whole chain, close the table
    start = next(i for i, l in enumerate(body) if l.startswith("\tchain "))
    body = ["table inet firewalld {"] + body[start:]
    end = max(i for i, l in enumerate(body) if l == "\t}")
    body = body[:end + 1] + ["}"]
    write("firewalld-2", "nft", head, body, "firewalld=1 fully-random=0", "from the excerpt's first whole chain to its last, inside table inet firewalld { }")
    head, body = read("netavark-2")
    keep = cut_truncated(body)
    while keep and not keep[-1].startswith("\t}"):
        keep.pop()
    write("netavark-2", "nft", head, keep + ["}"], "netavark=2 fully-random=0", "cut at the last whole chain before the truncation, table closed")
    head, body = read("libvirt-3")
    write("libvirt-3", "nft", head, ["table ip nat {"] + body + ["}"], "libvirt=3 flags-unknown=3", "the excerpt's chain wrapped in its table (ip nat, iptables-nft)")
    generated()

def generated():
    # commands and scripts: run with the real tools in a namespace, dumped
    fresh_ns()
    head, body = read("libvirt-1")
    script = "\n".join(body).replace("\\\n", " ")
    for l in script.split("\n"):
        l = l.strip()
        if l.startswith("iptables "):
            inns("sh", "-c", "iptables-legacy " + l[len("iptables "):])
    write("libvirt-1", "iptables-save", head, untime(inns("iptables-legacy-save", "-t", "nat")).split("\n"),
          "libvirt=2 unknown=1 fully-random=0",
          "the fixture's iptables commands run with iptables-legacy 1.8.9 in a namespace, then iptables-legacy-save -t nat. The protocol-less MASQUERADE is libvirt's too, but the pre-5.1 shape has nothing of its own (RE2 cannot demand -s X ! -d X): unknown")
    fresh_ns()
    head, body = read("libvirt-2")
    script = "\n".join(body).replace("\\\n", " ")
    inns("ip", "link", "add", "virbr0", "type", "bridge")
    inns("nft", "-f", "-", stdin="""add table ip libvirt_network
add chain ip libvirt_network forward { type filter hook forward priority 0; policy accept; }
add chain ip libvirt_network guest_output
add chain ip libvirt_network guest_input
add chain ip libvirt_network guest_cross
add chain ip libvirt_network guest_nat { type nat hook postrouting priority 100; policy accept; }
""")
    for l in script.split("\n"):
        l = l.strip()
        if l.startswith("nft "):
            inns("sh", "-c", l.replace("-ae ", ""))
    write("libvirt-2", "nft", head, inns("nft", "list", "ruleset").split("\n"), "libvirt=3 fully-random=0",
          "the fixture's nft commands run with nft 1.0.6 in a namespace, after creating the table and chains libvirt's network_nftables.c creates (forward, guest_output, guest_input, guest_cross, guest_nat: nat postrouting 100) and a virbr0, then nft list ruleset")
    for name, want, fix in [("cni-3", "cni=10 fully-random=0", None),
                            ("cni-4", "cni=2 fully-random=0", "output a b fib"),
                            ("kube-proxy-1", "kube-proxy=1 fully-random=1", None)]:
        fresh_ns()
        head, body = read(name)
        lines = [l.strip() for l in body if l.strip() and not l.strip().startswith("#")]
        if fix:
            lines = [l for l in lines if fix not in l]
        if name == "cni-4":
            lines = ["add table ip cni_hostport"] + lines
        if name == "kube-proxy-1":
            # the sets and maps kube-proxy declares before its rules (proxier.go)
            lines = ["add table ip kube-proxy",
                     "add set ip kube-proxy cluster-ips { type ipv4_addr ; }",
                     "add map ip kube-proxy firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }"] + lines
        r = subprocess.run(["ip", "netns", "exec", NS, "nft", "-f", "-"], input="\n".join(lines) + "\n", capture_output=True, text=True)
        if r.returncode != 0:
            print(name, "nft -f failed:", r.stderr[:400]); continue
        how = "the fixture's nft -f script loaded with nft 1.0.6 in a namespace, then nft list ruleset"
        if name == "kube-proxy-1":
            how += "; the sets cluster-ips and firewall-ips declared first, as proxier.go does"
        if fix:
            how += '; its line with the placeholder "a b" dropped'
        write(name, "nft", head, inns("nft", "list", "ruleset").split("\n"), want, how)
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)

main()

def reconstructed():
    head, _ = read("firewalld-1")
    write("firewalld-1", "nft", head, ["table inet firewalld {", "\tchain nat_POST_public_allow {", '\t\tmeta nfproto ipv4 oifname != "lo" masquerade', "\t}", "}"],
          "firewalld=1 fully-random=0", "the NFT_LIST_RULES expectation of the autotest, verbatim, as nft list output")
    head, _ = read("flannel-2")
    pod, net, mc = "10.244.1.0/24", "10.244.0.0/16", "224.0.0.0/4"
    S = ['-N FLANNEL-POSTRTG',
         '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
         '-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN',
         '-A FLANNEL-POSTRTG -s %s -d %s -m comment --comment "flanneld masq" -j RETURN' % (pod, net),
         '-A FLANNEL-POSTRTG -s %s -d %s -m comment --comment "flanneld masq" -j RETURN' % (net, pod),
         '-A FLANNEL-POSTRTG ! -s %s -d %s -m comment --comment "flanneld masq" -j RETURN' % (net, pod),
         '-A FLANNEL-POSTRTG -s %s ! -d %s -m comment --comment "flanneld masq" -j MASQUERADE --random-fully' % (net, mc),
         '-A FLANNEL-POSTRTG ! -s %s -d %s -m comment --comment "flanneld masq" -j MASQUERADE --random-fully' % (net, net)]
    write("flannel-2", "S", head, S, "flannel=2 fully-random=2", "iptablesPostroutingRules instantiated with podCIDR %s, network %s, multicast %s (the -N line first, as iptables -S prints it)" % (pod, net, mc))
    N = ["table ip flannel-ipv4 {", "\tchain postrtg {", '\t\tcomment "chain to manage traffic masquerading by flannel"',
         "\t\ttype nat hook postrouting priority srcnat; policy accept;", "\t\tmeta mark 0x00004000 return",
         "\t\tip saddr %s ip daddr %s return" % (pod, net), "\t\tip saddr %s ip daddr %s return" % (net, pod),
         "\t\tip saddr != %s ip daddr %s return" % (pod, net), "\t\tip saddr %s ip daddr != 224.0.0.0/4 masquerade fully-random" % net,
         "\t\tip saddr != %s ip daddr %s masquerade fully-random" % (net, net), "\t}", "}"]
    write("flannel-2b", "nft", head, N, "flannel=2 fully-random=2", "expectedNftPostrouting instantiated with podCIDR %s, flannelNet %s" % (pod, net))
    head, _ = read("kube-router-1")
    write("kube-router-1", "S", head, ['-A POSTROUTING ! -s 10.244.1.0/24 ! -d 10.244.1.0/24 -m ipvs --vdir ORIGINAL --vmethod MASQ -m comment --comment "" -j MASQUERADE'],
          "kube-router=1 fully-random=0", "the reporter's first rule with NODE_POD_NET = 10.244.1.0/24")
    head, _ = read("netavark-3")
    write("netavark-3", "nft", head, ["table inet netavark {", "\tchain POSTROUTING {", "\t\ttype nat hook postrouting priority srcnat; policy accept;",
          "\t\tmeta mark & 0x00002000 == 0x00002000 masquerade", "\t\tip saddr 10.88.0.0/16 jump nv_2f259bab_10_88_0_0_nm16", "\t}",
          "\tchain nv_2f259bab_10_88_0_0_nm16 {", "\t\tip daddr 10.88.0.0/16 accept", "\t\tip daddr != 224.0.0.0/4 masquerade", "\t}", "}"],
          "netavark=2 fully-random=0", "the two chains the bats test asserts, line for line, as nft list output")
    fresh_ns()
    head, _ = read("k3s-1")
    inns("iptables-legacy", "-t", "nat", "-I", "PREROUTING", "-p", "tcp", "--dport", "80", "-j", "DNAT", "--to", "10.43.12.7:80")
    inns("iptables-legacy", "-t", "nat", "-I", "POSTROUTING", "-d", "10.43.12.7/32", "-p", "tcp", "-j", "MASQUERADE")
    write("k3s-1", "iptables-save", head, untime(inns("iptables-legacy-save", "-t", "nat")).split("\n"), "k3s=1 fully-random=0",
          "the entry script's IPv4 commands for one tcp port (DEST_IPS 10.43.12.7, SRC_PORT/DEST_PORT 80) run with iptables-legacy in a namespace, then iptables-legacy-save -t nat")
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)

reconstructed()
