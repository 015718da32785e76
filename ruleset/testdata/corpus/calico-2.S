# provenance: GitHub issue https://github.com/projectcalico/felix/issues/1421 ("Error spotted on calicoctl STs", turn 7 by robbrockbank; iptables-save v1.6.0, 2017-05-17)
# commit: n/a (issue text; copied from the issue-search excerpt; the log's "  # " prefix is kept)
# kind: real iptables-save lines (nat end + filter start) from Felix 2.x (before --random-fully support, Felix PR #1901 of 2018-10)
# curated: the log's "  # " prefix and the COMMIT/Completed lines dropped: the -A lines read as iptables -S
# want: calico=1 fully-random=0
-A cali-PREROUTING -m comment --comment "cali:r6XmIziWUJsdOK6Z" -j cali-fip-dnat
-A cali-nat-outgoing -m comment --comment "cali:Wd76s91357Uv7N3v" -m set --match-set cali4-masq-ipam-pools src -m set ! --match-set cali4-all-ipam-pools dst -j MASQUERADE
