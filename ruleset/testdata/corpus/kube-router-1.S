# provenance: GitHub issue https://github.com/cloudnativelabs/kube-router/issues/337 (comment by FabienZouaoui, 2020-03-16; kube-router v0.4.0)
# commit: n/a (issue text; copied from the issue-search excerpt; NODE_POD_NET / CORRECT_IP_ADDRESS are the reporter's placeholders)
# kind: kube-router IPVS service-proxy masquerade rule in iptables-save syntax (and the reporter's SNAT variant, which kube-router >= v1.0 writes itself)
# curated: the reporter's first rule with NODE_POD_NET = 10.244.1.0/24
# want: kube-router=1 fully-random=0
-A POSTROUTING ! -s 10.244.1.0/24 ! -d 10.244.1.0/24 -m ipvs --vdir ORIGINAL --vmethod MASQ -m comment --comment "" -j MASQUERADE
