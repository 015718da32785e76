#!/bin/sh
# rootfs.sh DIR: the files the snatrace image needs besides snatrace itself,
# copied from this Debian system into DIR: the iptables tools that audit and
# fix run on a node (iptables-legacy-save, iptables-nft-save, ip6tables-...,
# their -restore), every xtables extension they load to print a rule, the
# shared libraries of all of them, and /etc/protocols, /etc/ethertypes.
# Run by the Containerfile's tools stage; installs iptables first only when
# the base image lacks it (an offline base already has it).
set -eu
R=$1
if ! command -v xtables-legacy-multi >/dev/null 2>&1; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iptables netbase >/dev/null
fi

# Debian's merged /usr: /bin, /sbin, /lib, /lib64 are links into /usr.
mkdir -p "$R/usr/bin" "$R/usr/sbin" "$R/usr/lib" "$R/usr/lib64" "$R/etc" "$R/tmp" "$R/run"
chmod 1777 "$R/tmp"
for d in bin sbin lib lib64; do ln -sfn "usr/$d" "$R/$d"; done

# put PATH: copy PATH (a symlink and what it points to) to the same place
# under $R, directories resolved (so /lib/x.so lands in /usr/lib).
put() {
	dir=$(readlink -f "$(dirname "$1")")
	mkdir -p "$R$dir"
	cp -a "$1" "$R$dir/"
	if [ -L "$1" ]; then put "$(readlink -f "$1")"; fi
}

# libs FILE...: put the shared libraries FILE needs, and its loader.
libs() {
	ldd "$@" 2>/dev/null | awk '/=> \// {print $3} /^\t\// {print $1}' | sort -u | while read -r lib; do
		put "$lib"
	done
}

multi="/usr/sbin/xtables-legacy-multi /usr/sbin/xtables-nft-multi"
xt=$(dirname "$(ls /usr/lib/*/xtables/libxt_MASQUERADE.so)")
for f in $multi; do put "$f"; done
mkdir -p "$R$xt"
cp -a "$xt/." "$R$xt/"
libs $multi "$xt"/*.so

# The tools by name, each a link to its multi-call binary. iptables itself
# (its version is part of the audit) is the nft flavour, Debian's default.
for fam in iptables ip6tables; do
	for flavour in legacy nft; do
		for verb in "" -save -restore; do
			ln -sf "xtables-$flavour-multi" "$R/usr/sbin/$fam-$flavour$verb"
		done
	done
	for verb in "" -save -restore; do ln -sf "xtables-nft-multi" "$R/usr/sbin/$fam$verb"; done
done

for f in /etc/protocols /etc/ethertypes; do
	if [ -e "$f" ]; then cp -a "$f" "$R/etc/"; fi
done
printf 'root:x:0:0:root:/:/usr/bin/snatrace\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"
