#!/usr/bin/env bash
# image.sh builds hoptrace's container images without Docker: one layer holding a
# static binary (and a CA bundle where TLS may be needed), written by
# hack/imagebuild as an OCI archive that `ctr images import`,
# `kind load image-archive` and `docker load` accept.
#
#   scripts/image.sh build [IMAGE...]    write bin/images/IMAGE.tar (default: hoptrace sampleapp)
#   scripts/image.sh import [IMAGE...]   import the archives into containerd's k8s.io namespace,
#                                        building those not built yet
#   scripts/image.sh ref IMAGE           print the image reference pods use
#   scripts/image.sh archive IMAGE       print the archive path
#
# IMAGE is one of:
#   hoptrace    the agent (cmd/hoptrace)                  hoptrace/hoptrace:$IMAGE_TAG
#   sampleapp   hello/world/emoji/client (cmd/sampleapp)  hoptrace/sampleapp:$IMAGE_TAG
#   jaeger      Jaeger v2 all-in-one (scripts/jaeger.sh)  hoptrace/jaeger:$IMAGE_TAG
#   pause       the pod sandbox image (hack/pause)        hoptrace/pause:$IMAGE_TAG
#   coredns     CoreDNS (github.com/coredns/coredns)      hoptrace/coredns:$IMAGE_TAG
#   nodeprobe   the e2e suite's node inspector            hoptrace/e2e-nodeprobe:$IMAGE_TAG
#               (test/e2e/nodeprobe)
#   all         every one of them
#
# Environment (all optional):
#   IMAGE_TAG           tag of every image (default dev)
#   IMAGE_PLATFORMS     comma-separated platforms for hoptrace and sampleapp, e.g.
#                       linux/amd64,linux/arm64 (default: this machine's); the
#                       others are built for this machine only
#   IMAGE_DIR           where archives go (default bin/images)
#   HOPTRACE_CACHE      cache root for built tools (default ~/.cache/hoptrace)
#   COREDNS_VERSION     github.com/coredns/coredns version (default v1.15.0)
#   CONTAINERD_ADDRESS  containerd socket for import (default: the one
#                       scripts/cluster-up.sh runs, else /run/containerd/containerd.sock)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${HOPTRACE_CACHE:-$HOME/.cache/hoptrace}
IMAGE_TAG=${IMAGE_TAG:-dev}
IMAGE_DIR=${IMAGE_DIR:-$ROOT/bin/images}
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}
GO=${GO:-go}
command -v "$GO" >/dev/null 2>&1 || GO=/usr/local/go/bin/go
HOST_ARCH=$("$GO" env GOARCH)
IMAGE_PLATFORMS=${IMAGE_PLATFORMS:-linux/$HOST_ARCH}
VERSION=${VERSION:-$(git -C "$ROOT" describe --tags --always --dirty 2>/dev/null || echo dev)}
ALL_IMAGES="hoptrace sampleapp jaeger pause coredns nodeprobe"

log() { echo "image.sh: $*" >&2; }
die() { log "$*"; exit 1; }

ref() {
	case $1 in
	nodeprobe) echo "hoptrace/e2e-nodeprobe:$IMAGE_TAG" ;;
	*) echo "hoptrace/$1:$IMAGE_TAG" ;;
	esac
}
archive() { echo "$IMAGE_DIR/$1.tar"; }

# staging makes an empty root filesystem for one image and platform; the
# caller fills it. Kept under bin/ so `make clean` removes it.
staging() {
	local dir=$ROOT/bin/rootfs/$1/${2//\//-}
	rm -rf "$dir"
	mkdir -p "$dir"
	echo "$dir"
}

# Static binaries only: the images have no libc.
go_static() {
	local platform=$1 out=$2 pkg=$3
	shift 3
	local os=${platform%%/*} rest=${platform#*/}
	local arch=${rest%%/*}
	(cd "$ROOT" && CGO_ENABLED=0 GOOS=$os GOARCH=$arch "$GO" build -trimpath "$@" -o "$out" "$pkg")
}

add_ca_bundle() {
	# The agent may export over TLS; a scratch image has no trust store.
	local bundle=/etc/ssl/certs/ca-certificates.crt
	if [[ -f $bundle ]]; then
		install -D -m 0644 "$bundle" "$1/etc/ssl/certs/ca-certificates.crt"
	else
		log "warning: $bundle not found; images trust no CA (apt-get install ca-certificates)"
	fi
}

pack() {
	local name=$1
	shift
	(cd "$ROOT" && "$GO" run ./hack/imagebuild -name "$(ref "$name")" -o "$(archive "$name")" "$@")
	log "wrote $(archive "$name") ($(ref "$name"), $(du -h "$(archive "$name")" | cut -f1))"
}

build_hoptrace() {
	local args=() p dir
	IFS=, read -ra plats <<<"$IMAGE_PLATFORMS"
	for p in "${plats[@]}"; do
		dir=$(staging hoptrace "$p")
		go_static "$p" "$dir/usr/local/bin/hoptrace" ./cmd/hoptrace -ldflags "-s -w -X main.version=$VERSION"
		add_ca_bundle "$dir"
		# The admin socket's directory; the DaemonSet mounts the host's over it.
		mkdir -p "$dir/var/run/hoptrace" "$dir/tmp"
		chmod 1777 "$dir/tmp"
		args+=("$p=$dir")
	done
	pack hoptrace -entrypoint /usr/local/bin/hoptrace -cmd agent \
		-env PATH=/usr/local/bin:/usr/bin:/bin \
		-label org.opencontainers.image.title=hoptrace \
		-label "org.opencontainers.image.version=$VERSION" \
		-label org.opencontainers.image.source=https://github.com/hoptrace/hoptrace \
		"${args[@]}"
}

build_sampleapp() {
	local args=() p dir
	IFS=, read -ra plats <<<"$IMAGE_PLATFORMS"
	for p in "${plats[@]}"; do
		dir=$(staging sampleapp "$p")
		go_static "$p" "$dir/usr/local/bin/sampleapp" ./cmd/sampleapp -ldflags "-s -w"
		args+=("$p=$dir")
	done
	pack sampleapp -entrypoint /usr/local/bin/sampleapp -env PATH=/usr/local/bin \
		-label org.opencontainers.image.title=hoptrace-sampleapp "${args[@]}"
}

build_pause() {
	local dir
	dir=$(staging pause "linux/$HOST_ARCH")
	go_static "linux/$HOST_ARCH" "$dir/pause" ./hack/pause -ldflags "-s -w"
	pack pause -entrypoint /pause "linux/$HOST_ARCH=$dir"
}

# A static Jaeger for a scratch image: scripts/jaeger.sh builds one by default
# (CGO_ENABLED=0). A cached binary from before that (dynamically linked) is left
# for the tests, and a static one is built into a cache root of its own.
jaeger_static() {
	# scripts/jaeger.sh builds static by default now: reuse that binary when it is.
	if [[ -x $CACHE/bin/jaeger ]] && file_is_static "$CACHE/bin/jaeger"; then
		echo "$CACHE/bin/jaeger"
		return
	fi
	local cache=$CACHE/static
	if [[ ! -x $cache/bin/jaeger ]] || ! file_is_static "$cache/bin/jaeger"; then
		log "building a static Jaeger (CGO_ENABLED=0; takes minutes)"
		CGO_ENABLED=0 HOPTRACE_CACHE=$cache "$ROOT/scripts/jaeger.sh" build >&2
	fi
	file_is_static "$cache/bin/jaeger" || die "$cache/bin/jaeger is not statically linked"
	echo "$cache/bin/jaeger"
}

# file_is_static: no ELF interpreter means no dynamic loader is needed.
file_is_static() {
	! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'Requesting program interpreter'
}

build_jaeger() {
	local bin dir
	bin=$(jaeger_static)
	dir=$(staging jaeger "linux/$HOST_ARCH")
	install -D -m 0755 "$bin" "$dir/usr/local/bin/jaeger"
	mkdir -p "$dir/tmp"
	chmod 1777 "$dir/tmp"
	# The configuration comes from a ConfigMap (deploy/jaeger.yaml); the default
	# command points at where it is mounted.
	pack jaeger -entrypoint /usr/local/bin/jaeger -cmd --config -cmd /etc/jaeger/config.yaml \
		-port 4317/tcp -port 4318/tcp -port 16686/tcp -port 13133/tcp "linux/$HOST_ARCH=$dir"
}

coredns_bin() {
	local bin=$CACHE/bin/coredns
	if [[ -x $bin && "$(cat "$bin.version" 2>/dev/null)" == "$COREDNS_VERSION" ]]; then
		echo "$bin"
		return
	fi
	log "building coredns $COREDNS_VERSION (about 2 minutes)"
	mkdir -p "$CACHE/bin"
	local gobin
	gobin=$(mktemp -d "$CACHE/coredns-build.XXXXXX")
	# Outside the project module: CoreDNS's dependencies are not hoptrace's.
	(cd "$gobin" && CGO_ENABLED=0 GOBIN=$gobin GOFLAGS=-buildvcs=false "$GO" install -trimpath -ldflags "-s -w" \
		"github.com/coredns/coredns@$COREDNS_VERSION") >&2 || {
		rm -rf "$gobin"
		die "coredns build failed"
	}
	mv "$gobin/coredns" "$bin"
	rm -rf "$gobin"
	echo "$COREDNS_VERSION" >"$bin.version"
	echo "$bin"
}

build_coredns() {
	local bin dir
	bin=$(coredns_bin)
	file_is_static "$bin" || die "$bin is not statically linked"
	dir=$(staging coredns "linux/$HOST_ARCH")
	install -D -m 0755 "$bin" "$dir/coredns"
	pack coredns -entrypoint /coredns -port 53/udp -port 53/tcp "linux/$HOST_ARCH=$dir"
}

build_nodeprobe() {
	local args=() p dir
	IFS=, read -ra plats <<<"$IMAGE_PLATFORMS"
	for p in "${plats[@]}"; do
		dir=$(staging nodeprobe "$p")
		go_static "$p" "$dir/usr/local/bin/nodeprobe" ./test/e2e/nodeprobe -ldflags "-s -w"
		args+=("$p=$dir")
	done
	pack nodeprobe -entrypoint /usr/local/bin/nodeprobe "${args[@]}"
}

expand() {
	local names=("$@") n out=()
	[[ ${#names[@]} -gt 0 ]] || names=(hoptrace sampleapp)
	for n in "${names[@]}"; do
		case $n in
		all) read -ra all <<<"$ALL_IMAGES" && out+=("${all[@]}") ;;
		hoptrace | sampleapp | jaeger | pause | coredns | nodeprobe) out+=("$n") ;;
		*) die "unknown image $n (want: $ALL_IMAGES all)" ;;
		esac
	done
	echo "${out[@]}"
}

build() {
	local n
	mkdir -p "$IMAGE_DIR"
	for n in $(expand "$@"); do
		"build_$n"
	done
}

containerd_address() {
	if [[ -n ${CONTAINERD_ADDRESS:-} ]]; then
		echo "$CONTAINERD_ADDRESS"
	elif [[ -S ${CLUSTER_STATE:-/var/lib/hoptrace-cluster}/run/containerd.sock ]]; then
		echo "${CLUSTER_STATE:-/var/lib/hoptrace-cluster}/run/containerd.sock"
	else
		echo /run/containerd/containerd.sock
	fi
}

import() {
	local n addr
	addr=$(containerd_address)
	[[ -S $addr ]] || die "no containerd socket at $addr (scripts/cluster-up.sh starts one)"
	command -v ctr >/dev/null 2>&1 || die "ctr not found (apt-get install containerd)"
	for n in $(expand "$@"); do
		[[ -f $(archive "$n") ]] || "build_$n"
		# --all-platforms: a multi-platform archive is stored whole, so the
		# image's digest matches the archive's everywhere.
		ctr --address "$addr" -n k8s.io images import --all-platforms "$(archive "$n")" >/dev/null
		log "imported $(ref "$n") into $addr"
	done
}

case "${1:-}" in
build)
	shift
	build "$@"
	;;
import)
	shift
	import "$@"
	;;
ref) ref "${2:?image name}" ;;
archive) archive "${2:?image name}" ;;
*) die "usage: $0 {build|import} [IMAGE...] | {ref|archive} IMAGE   (IMAGE: $ALL_IMAGES all)" ;;
esac
