# provenance: GitHub PR https://github.com/cilium/cilium/pull/14913 ("iptables: Fix incorrect SNAT bypass with endpoint routes and tunneling", pchaigno, 2021-02-09)
# commit: n/a (PR description; copied from the issue-search excerpt, which ends mid-list, marked [truncated]; the "1. " list numbering is kept)
# kind: CILIUM_POST_nat rules in iptables-save syntax (Cilium 1.9/1.10, tunneling, iptables masquerading i.e. bpf.masquerade=false)
# curated: the first chain of the PR text, list numbering ("1. ") dropped
# want: cilium=3 fully-random=0
-A CILIUM_POST_nat -s 10.0.1.0/24 ! -d 10.0.0.0/8 ! -o cilium_+ -m comment --comment "cilium masquerade non-cluster" -j MASQUERADE
-A CILIUM_POST_nat ! -o cilium_host -m comment --comment "exclude non-cilium_host traffic from masquerade" -j RETURN
-A CILIUM_POST_nat -m mark --mark 0xa00/0xe00 -m comment --comment "exclude proxy return traffic from masquarade" -j ACCEPT
-A CILIUM_POST_nat ! -s 10.0.1.6/32 ! -d 10.0.1.0/24 -o cilium_host -m comment --comment "cilium host->cluster masquerade" -j SNAT --to-source 10.0.1.6
-A CILIUM_POST_nat -s 127.0.0.1/32 -o cilium_host -m comment --comment "cilium host->cluster from 127.0.0.1 masquerade" -j SNAT --to-source 10.0.1.6
