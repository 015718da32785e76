#!/bin/bash
# Records this directory's lab runs on a kernel package in a VM (no root):
#   sim/testdata/kernel-6.1/record.sh linux-image-6.1.0-50-cloud-amd64_6.1.176-1_amd64.deb [snatrace]
set -euo pipefail
K=$1
S=${2:-snatrace}
O=$(dirname "$0")
run() { name=$1; shift; echo "== $name: $*"; "$S" lab --kernel "$K" --json "$@" > "$O/$name.json"; }
run lab-same-port-4pods --pods 4 --connections 12000
run lab-same-port-16pods --pods 16 --connections 12000 --nat masquerade --nat "masquerade random" --nat "masquerade fully-random"
run lab-same-port-4pods-64natports --pods 4 --connections 4000 --nat "masquerade to :1024-1087 fully-random" --nat "masquerade to :1024-1087"
run lab-same-port-4pods-12natports --pods 4 --connections 4000 --nat "masquerade to :1024-1035" --nat "masquerade to :1024-1047"
run lab-same-port-4pods-snat2 --pods 4 --connections 8000 --nat "snat to 198.51.100.10-198.51.100.11" --nat "snat to 198.51.100.10-198.51.100.11 persistent"
run lab-same-port-4pods-snat3-5 --pods 4 --connections 8000 --nat "snat to 198.51.100.10-198.51.100.12" --nat "snat to 198.51.100.10-198.51.100.14"
run lab-same-port-8pods-2servers --pods 8 --servers 2 --connections 12000 --nat masquerade --nat "masquerade random"
run lab-ephemeral-2pods-10ports --workload ephemeral --pods 2 --port-range 32768-32777 --connections 8000 --nat masquerade
run lab-ephemeral-4pods-10ports --workload ephemeral --pods 4 --port-range 32768-32777 --connections 12000
run lab-ephemeral-32pods-100ports --workload ephemeral --pods 32 --port-range 32768-32867 --connections 12000
run lab-steady-poisson-5000 --workload steady --rate 5000/s --poisson --pods 8 --port-range 32768-32867 --connections 10000
