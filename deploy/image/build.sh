#!/usr/bin/env bash
# deploy/image/build.sh [--offline]: build the snatrace image for this
# machine's architecture and print its reference.
#
#   deploy/image/build.sh              docker or podman; the Debian base is pulled
#   deploy/image/build.sh --offline    no registry: the Debian base is made from
#                                      Debian packages with mmdebstrap (root), once,
#                                      and imported as a local image
#
# The reference defaults to the one the manifests deploy (the images: entry of
# deploy/kubernetes/kustomization.yaml), so what is built is what the DaemonSet
# runs. Environment:
#   VERSION   image tag and `snatrace version` (default: the manifests' tag)
#   IMAGE     repository (default: the manifests' image name)
#   ARCH      GOARCH to build for (default: go env GOARCH)
#   ENGINE    container engine command, words split (default: podman, else docker),
#             e.g. ENGINE="podman --root /tmp/store --runroot /tmp/run"
#   SNATRACE_BASE_CACHE  where --offline keeps its Debian base tarball
#             (default: ${XDG_CACHE_HOME:-~/.cache}/snatrace)
set -euo pipefail
cd "$(dirname "$0")/../.."

offline=
case "${1:-}" in
--offline) offline=1 ;;
"") ;;
*) echo "usage: deploy/image/build.sh [--offline]" >&2; exit 2 ;;
esac

kust=deploy/kubernetes/kustomization.yaml
IMAGE=${IMAGE:-$(awk '/newName:/ {print $2; exit}' "$kust")}
VERSION=${VERSION:-$(awk '/newTag:/ {print $2; exit}' "$kust")}
ARCH=${ARCH:-$(go env GOARCH)}
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
CREATED=$(date -u -d "@$(git log -1 --format=%ct 2>/dev/null || echo 0)" +%Y-%m-%dT%H:%M:%SZ)
if [[ -z ${ENGINE:-} ]]; then
	ENGINE=$(command -v podman || command -v docker || true)
	[[ -n $ENGINE ]] || { echo "build.sh: needs podman or docker" >&2; exit 2; }
fi
read -r -a engine <<<"$ENGINE"

# A staged build context: the Containerfile's two inputs and nothing else.
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/deploy/image" "$ctx/bin/linux-$ARCH"
cp deploy/image/rootfs.sh "$ctx/deploy/image/"
CGO_ENABLED=0 GOOS=linux GOARCH=$ARCH go build -trimpath \
	-ldflags "-s -w -X main.version=$VERSION -X main.revision=$REVISION" -o "$ctx/bin/linux-$ARCH/snatrace" ./cmd/snatrace

args=(--build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" --build-arg "CREATED=$CREATED"
	--build-arg "TARGETARCH=$ARCH" --platform "linux/$ARCH")
if [[ -n $offline ]]; then
	cache=${SNATRACE_BASE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/snatrace}
	base=$cache/debian-bookworm-iptables-$ARCH.tar
	if [[ ! -s $base ]]; then
		command -v mmdebstrap >/dev/null || { echo "build.sh --offline: needs mmdebstrap (apt-get install mmdebstrap)" >&2; exit 2; }
		mkdir -p "$cache"
		echo "build.sh: making the Debian base $base with mmdebstrap" >&2
		# This machine's own apt sources: the mirror it already reaches.
		sources=()
		for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
			if [[ -s $f ]]; then sources+=("$f"); fi
		done
		mmdebstrap --quiet --format=tar --variant=minbase --architectures="$ARCH" --include=iptables,netbase \
			--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
			--dpkgopt='path-exclude=/usr/share/locale/*' bookworm "$base.tmp" "${sources[@]}" </dev/null >&2
		mv "$base.tmp" "$base"
	fi
	"${engine[@]}" import --quiet "$base" localhost/snatrace-debian:bookworm-iptables >/dev/null
	args+=(--build-arg DEBIAN_IMAGE=localhost/snatrace-debian:bookworm-iptables --network=none)
fi
"${engine[@]}" build --quiet -f deploy/image/Containerfile "${args[@]}" -t "$IMAGE:$VERSION" "$ctx" >&2
echo "$IMAGE:$VERSION"
