# provenance: github.com/flannel-io/flannel, path: e2e/rules.go (functions iptablesPostroutingRules and expectedNftPostrouting: golden rules the e2e test compares with the node)
# commit: cdf760595c23292fd03ff4daf03638ac1ceef417 (flannel main 2026-08; FLANNEL-POSTRTG chain since v0.20.0, "flanneld masq" comment since v0.16.2, nftables mode since v0.25.0)
# kind: test fixture (Go templates: %s = cluster network / pod CIDR / multicast range), iptables -S and nft list table forms
# expect (iptables): 2 MASQUERADE --random-fully in FLANNEL-POSTRTG, comment "flanneld masq" -> owner flannel, fully-random -> no finding
# expect (nft): table ip flannel-ipv4, chain postrtg (nat hook postrouting priority srcnat): 2 "masquerade fully-random"
# curated: iptablesPostroutingRules instantiated with podCIDR 10.244.1.0/24, network 10.244.0.0/16, multicast 224.0.0.0/4 (the -N line first, as iptables -S prints it)
# want: flannel=2 fully-random=2
-N FLANNEL-POSTRTG
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
