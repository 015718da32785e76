# provenance: GitHub issue https://github.com/flannel-io/flannel/issues/1702 ("Pod can't access clusterip service for another pod with endpoint on the same node", turn 3 by oe-hbk)
# commit: n/a (issue text; copied from the issue-search excerpt, which ends mid-line, marked [truncated])
# kind: real iptables-save (nat) excerpt: flannel >= v0.20 (FLANNEL-POSTRTG) + CNI portmap (network "cbr0") + kube-proxy, kubespray 10.233.64.0/18
# curated: verbatim
# want: rules=0
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A CNI-DN-bf882a7c6b6d62bc1131a -s 10.233.64.0/24 -p tcp -m tcp --dport 80 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-bf882a7c6b6d62bc1131a -s 127.0.0.1/32 -p tcp -m tcp --dport 80 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-bf882a7c6b6d62bc1131a -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.233.64.93:80
-A CNI-DN-bf882a7c6b6d62bc1131a -s 10.233.64.0/24 -p tcp -m tcp --dport 443 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-bf882a7c6b6d62bc1131a -s 127.0.0.1/32 -p tcp -m tcp --dport 443 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-bf882a7c6b6d62bc1131a -p tcp -m tcp --dport 443 -j DNAT --to-destination 10.233.64.93:443
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"cbr0\" id: \"be884d182a6ed5c10e7a6a8b60cb52c2bf230306ddd6767ac67b9e6e87fe4686\"" -m multiport --dports 80,443 -j CNI-DN-bf882a7c6b6d62bc1131a
-A CN [truncated]
