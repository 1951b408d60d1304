#!/usr/bin/env bash
# kube-apiserver.sh builds the real Kubernetes API server (and kubectl) that the
# pods package's tests run against, and installs etcd for it.
#
#   scripts/kube-apiserver.sh build   build kube-apiserver + kubectl once into
#                                     $HOPTRACE_CACHE/bin, install etcd-server if missing
#   scripts/kube-apiserver.sh path    print the directory holding the binaries
#
# The test helper internal/kubetest starts and stops etcd and kube-apiserver itself
# (loopback only, temporary certificates and data), so there is no start/stop here.
#
# Environment (all optional):
#   HOPTRACE_CACHE      cache root (default ~/.cache/hoptrace)
#   KUBE_VERSION        k8s.io/kubernetes module version (default v1.34.2)
#   KUBE_STAGING        version of the published staging modules (default v0.34.2)
#   KUBE_BINARIES       commands of k8s.io/kubernetes/cmd to build (default
#                       "kube-apiserver kubectl"; ones already built are skipped)
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.34.2}
KUBE_STAGING=${KUBE_STAGING:-v0.${KUBE_VERSION#v1.}}
KUBE_BINARIES=${KUBE_BINARIES:-kube-apiserver kubectl}
CACHE=${HOPTRACE_CACHE:-$HOME/.cache/hoptrace}
BIN_DIR=$CACHE/bin

log() { echo "kube-apiserver.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# missing prints the binaries of KUBE_BINARIES not yet built at KUBE_VERSION.
missing() {
	local b out=()
	for b in $KUBE_BINARIES; do
		[[ -x $BIN_DIR/$b && "$(cat "$BIN_DIR/$b.version" 2>/dev/null)" == "$KUBE_VERSION" ]] || out+=("$b")
	done
	echo "${out[*]}"
}

install_etcd() {
	if command -v etcd >/dev/null 2>&1; then
		return
	fi
	[[ $(id -u) -eq 0 ]] || die "etcd missing; run as root or: sudo apt-get install -y etcd-server"
	log "apt-get install etcd-server"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
	# Debian's package starts a system etcd on 2379 where a service manager runs;
	# tests start their own on free ports and need no system one.
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
		systemctl disable --now etcd >/dev/null 2>&1 || true
	fi
}

build_kube() {
	local todo
	todo=$(missing)
	if [[ -z $todo ]]; then
		log "$KUBE_BINARIES in $BIN_DIR are $KUBE_VERSION already"
		return
	fi
	mkdir -p "$BIN_DIR"
	local work
	work=$(mktemp -d "$CACHE/kube-build.XXXXXX")
	# shellcheck disable=SC2064 # expand now: $work is local
	trap "rm -rf '$work'" EXIT
	# GOSUMDB=off for this build only: the checksum database is not reachable here
	# and this wrapper has no go.sum to check against; the main module keeps its own.
	export GOSUMDB=off GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false"
	cd "$work"
	printf 'module hoptrace.local/kube-build\n\ngo 1.24\n' >go.mod
	log "fetching k8s.io/kubernetes@$KUBE_VERSION (large)"
	local gomod
	gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
	[[ -f $gomod ]] || die "no go.mod for k8s.io/kubernetes@$KUBE_VERSION"
	# k8s.io/kubernetes points every staging module at ./staging/src with a replace,
	# which a dependent module does not inherit: repeat each one, aimed at the
	# published module of the matching version instead.
	local staging
	staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/src/.*#\1#p' "$gomod")
	[[ -n $staging ]] || die "no staging replaces found in $gomod"
	{
		printf 'module hoptrace.local/kube-build\n\ngo 1.24\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$KUBE_VERSION"
		local m
		for m in $staging; do
			printf '\t%s => %s %s\n' "$m" "$m" "$KUBE_STAGING"
		done
		printf ')\n'
	} >go.mod
	log "$(wc -w <<<"$staging") staging modules replaced by $KUBE_STAGING"
	local pkgs=() b
	for b in $todo; do
		pkgs+=("k8s.io/kubernetes/cmd/$b")
	done
	log "building $todo (takes minutes)"
	go get "${pkgs[@]/%/@$KUBE_VERSION}"
	for b in $todo; do
		# Without the version stamp the binaries report v0.0.0-master, which
		# client version skew checks and kubectl complain about.
		go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION" \
			-o "$BIN_DIR/$b.tmp" "k8s.io/kubernetes/cmd/$b"
		mv "$BIN_DIR/$b.tmp" "$BIN_DIR/$b"
		echo "$KUBE_VERSION" >"$BIN_DIR/$b.version"
		log "built $BIN_DIR/$b"
	done
}

case "${1:-}" in
build)
	install_etcd
	build_kube
	;;
path) echo "$BIN_DIR" ;;
*) die "usage: $0 {build|path}" ;;
esac
