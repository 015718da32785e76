# provenance: GitHub issue https://github.com/kubernetes/kubernetes/issues/107591 ("hostPort receiving SNATed packets after upgrading k8s"; output quoted in thockin's reply, 2022-01-21)
# commit: n/a (issue text; copied from the issue-search excerpt, which ends mid-line, marked [truncated]; the "> " quote prefix is kept)
# kind: real 'iptables -t nat -S' (kubespray: kube-proxy ipvs/iptables + flannel + CNI portmap), pod CIDR 10.233.64.0/18
# curated: the "> " quote prefix dropped, cut before the truncated line. The two uncommented MASQUERADE rules are flannel < 0.16.2's, but that shape (-s POD_CIDR ! -d 224.0.0.0/4 in POSTROUTING) is also anyone's: unknown, not a guess
# want: unknown=2 fully-random=2
-P PREROUTING ACCEPT
-P INPUT ACCEPT
-P POSTROUTING ACCEPT
-P OUTPUT ACCEPT
-N KUBE-MARK-DROP
-N KUBE-MARK-MASQ
-N KUBE-POSTROUTING
-N KUBE-KUBELET-CANARY
-N KUBE-SERVICES
-N KUBE-FIREWALL
-N KUBE-NODE-PORT
-N KUBE-LOAD-BALANCER
-N CNI-HOSTPORT-SETMARK
-N CNI-HOSTPORT-MASQ
-N CNI-HOSTPORT-DNAT
-N CNI-DN-1c854eb4d9c11eb897c96
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -s 10.233.64.0/18 -d 10.233.64.0/18 -j RETURN
-A POSTROUTING -s 10.233.64.0/18 ! -d 224.0.0.0/4 -j MASQUERADE --random-fully
-A POSTROUTING ! -s 10.233.64.0/18 -d 10.233.66.0/24 -j RETURN
-A POSTROUTING ! -s 10.233.64.0/18 -d 10.233.64.0/18 -j MASQUERADE --random-fully
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
