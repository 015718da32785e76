#!/bin/sh
# gen.sh regenerates the owner dumps in this directory from src/ with the
# real tools: each src/*.rules is loaded with iptables-{legacy,nft}-restore and
# each src/*.nft with nft -f into a throwaway network namespace (snt-gen-*),
# then dumped with iptables-save / nft list ruleset / nft -j list ruleset.
# Timestamps are stripped so the files are stable. Needs root.
#
#   sh ruleset/testdata/owners/gen.sh
set -eu
cd "$(dirname "$0")"
mkipset=$(mktemp -d)/mkipset
(cd ../../.. && go build -o "$mkipset" ./ruleset/testdata/mkipset)
ns=snt-gen-$$
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$(dirname "$mkipset")"; }
trap cleanup EXIT
untime() { sed -E 's/ on [A-Z][a-z]{2} [A-Z][a-z]{2} +[0-9]+ [0-9:]+ [0-9]{4}$//'; }

for f in src/*.rules; do
	name=$(basename "$f" .rules)
	ip netns add "$ns"
	sets=$(sed -n 's/^# ipsets: //p' "$f")
	for s in $sets; do
		ip netns exec "$ns" "$mkipset" "${s%%:*}" "${s#*:}"
	done
	backend=$(sed -n 's/^# backend: //p' "$f")
	grep -v '^#' "$f" | ip netns exec "$ns" "iptables-$backend-restore"
	ip netns exec "$ns" "iptables-$backend-save" | untime >"$name.iptables-save"
	if [ "$backend" = nft ]; then
		ip netns exec "$ns" nft list ruleset >"$name.nft"
		ip netns exec "$ns" nft -j list ruleset >"$name.nft.json"
	fi
	ip netns exec "$ns" "iptables-$backend" -t nat -S >"$name.S"
	ip netns del "$ns"
done
for f in src/*.nft; do
	name=$(basename "$f" .nft)
	ip netns add "$ns"
	ip netns exec "$ns" nft -f "$f"
	ip netns exec "$ns" nft list ruleset >"$name.nft"
	ip netns exec "$ns" nft -a list ruleset >"$name.handles.nft"
	ip netns exec "$ns" nft -j list ruleset >"$name.nft.json"
	ip netns del "$ns"
done
