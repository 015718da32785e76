# provenance: GitHub issue https://github.com/projectcalico/calico/issues/7489 ("Allow NATOutgoingAddress to be a range", theSeanZhang, 2023-03-23; Calico v3.23.5, microk8s)
# commit: n/a (issue text; copied from the issue-search excerpt)
# kind: real Calico (Felix) natOutgoing rule with FelixConfiguration natOutgoingAddress=4.4.4.4, iptables-save syntax
# curated: verbatim
# want: calico=2 fully-random=2
-A cali-nat-outgoing -m comment --comment "cali:vIrzG8Q_UifWZ4y0" -m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j SNAT --to-source 4.4.4.4 --random-fully
-A cali-nat-outgoing -m comment --comment "cali:vIrzG8Q_UifWZ4y0" -m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j SNAT --to-source 4.4.4.4-4.4.4.254 --random-fully
