# provenance: github.com/containers/netavark, path: test/100-bridge-iptables.bats (test "simple bridge"), tag v1.4.0
# commit: c2a4b9abd47cac389a95301a94ae7c5d7f7d1573 (netavark 1.4.0 = Debian 12 bookworm)
# kind: test fixture: expected 'iptables -S <chain> -t nat' lines for the default podman network (podman0, 10.88.0.0/16)
# curated: verbatim
# want: netavark=1 fully-random=0
-A POSTROUTING -j NETAVARK-HOSTPORT-MASQ
-A POSTROUTING -s 10.88.0.0/16 -j NETAVARK-1D8721804F16F
-A NETAVARK-1D8721804F16F -d 10.88.0.0/16 -j ACCEPT
-A NETAVARK-1D8721804F16F ! -d 224.0.0.0/4 -j MASQUERADE
