#!/usr/bin/env bash
# kind-e2e.sh runs the Kubernetes end-to-end suite (test/e2e) on a kind cluster,
# for machines with Docker. It is the same suite scripts/cluster-e2e.sh runs on
# a local single-node cluster, with the same assertions:
#
#   1. kind create cluster (a control plane and a worker: the agent runs on both)
#   2. (nothing to prepare on the nodes: the DaemonSet's init container mounts
#      their bpffs, which kind nodes lack, and makes it shared)
#   3. scripts/image.sh build, then kind load image-archive for the agent, the
#      sample app, Jaeger and the e2e node probe
#   4. go test -tags e2e ./test/e2e: helm install, apps, traffic, traces in
#      Jaeger, rolling restart, helm uninstall, and the node check
#   5. kind delete cluster, always (KEEP_CLUSTER=1 keeps it)
#
# Needs: docker (running), go; kind, kubectl and helm are used from PATH or
# built from the Go module proxy into $HOPTRACE_CACHE/bin when missing.
#
# The nodes must have cgroup v2 (any recent Docker host does). This script
# cannot run on hoptrace's own build machines, which have no Docker engine;
# there, scripts/cluster-e2e.sh runs the suite on a real local node instead.
#
# Environment (all optional):
#   KIND_CLUSTER       cluster name (default hoptrace-e2e)
#   KIND_VERSION       sigs.k8s.io/kind version to build if kind is missing (default v0.30.0)
#   KIND_NODE_IMAGE    node image (default: kind's own for its version)
#   IMAGE_TAG          tag of the images (default dev)
#   IMAGE_PLATFORMS    see scripts/image.sh (default: this machine's)
#   E2E_RUN            go test -run pattern;  E2E_TIMEOUT (default 30m)
#   KEEP_CLUSTER=1     leave the cluster running
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${HOPTRACE_CACHE:-$HOME/.cache/hoptrace}
BIN_DIR=$CACHE/bin
KIND_CLUSTER=${KIND_CLUSTER:-hoptrace-e2e}
KIND_VERSION=${KIND_VERSION:-v0.30.0}
IMAGE_TAG=${IMAGE_TAG:-dev}
IMAGES=(hoptrace sampleapp jaeger nodeprobe)

log() { echo "kind-e2e.sh: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# find_tool NAME: PATH first, then the project's tool cache.
find_tool() {
	if command -v "$1" >/dev/null 2>&1; then
		command -v "$1"
	elif [[ -x $BIN_DIR/$1 ]]; then
		echo "$BIN_DIR/$1"
	else
		return 1
	fi
}

tools() {
	command -v docker >/dev/null 2>&1 || die "docker not found: kind needs a Docker (or Podman) engine; without one use scripts/cluster-e2e.sh"
	docker info >/dev/null 2>&1 || die "docker is installed but its engine does not answer (docker info failed)"
	command -v go >/dev/null 2>&1 || die "go not found"
	if ! KIND=$(find_tool kind); then
		log "building kind $KIND_VERSION"
		mkdir -p "$BIN_DIR"
		GOBIN=$BIN_DIR CGO_ENABLED=0 go install "sigs.k8s.io/kind@$KIND_VERSION"
		KIND=$BIN_DIR/kind
	fi
	if ! KUBECTL=$(find_tool kubectl); then
		KUBE_BINARIES=kubectl "$ROOT/scripts/kube-apiserver.sh" build
		KUBECTL=$BIN_DIR/kubectl
	fi
	if ! HELM=$(find_tool helm); then
		# shellcheck disable=SC2016 # $1 is expanded by the inner shell
		bash -c '. "$1/scripts/cluster-lib.sh" && install_helm' _ "$ROOT"
		HELM=$BIN_DIR/helm
	fi
}

cleanup() {
	local rc=$?
	if [[ ${KEEP_CLUSTER:-0} == 1 ]]; then
		log "KEEP_CLUSTER=1: kind cluster $KIND_CLUSTER stays (kind delete cluster --name $KIND_CLUSTER)"
		log "export KUBECONFIG=$KUBECONFIG_FILE"
	else
		"$KIND" delete cluster --name "$KIND_CLUSTER" >/dev/null 2>&1 || rc=1
		rm -f "$KUBECONFIG_FILE"
	fi
	exit "$rc"
}

main() {
	tools
	if "$KIND" get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
		die "kind cluster $KIND_CLUSTER exists already; delete it or set KIND_CLUSTER"
	fi
	KUBECONFIG_FILE=$(mktemp "${TMPDIR:-/tmp}/hoptrace-kind-kubeconfig.XXXXXX")
	trap cleanup EXIT

	local config args=(create cluster --name "$KIND_CLUSTER" --kubeconfig "$KUBECONFIG_FILE" --wait 3m)
	config=$(mktemp "${TMPDIR:-/tmp}/hoptrace-kind-config.XXXXXX")
	cat >"$config" <<'EOF'
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
EOF
	args+=(--config "$config")
	[[ -z ${KIND_NODE_IMAGE:-} ]] || args+=(--image "$KIND_NODE_IMAGE")
	log "creating kind cluster $KIND_CLUSTER"
	"$KIND" "${args[@]}"
	rm -f "$config"

	export IMAGE_TAG
	"$ROOT/scripts/image.sh" build "${IMAGES[@]}"
	local img
	for img in "${IMAGES[@]}"; do
		"$KIND" load image-archive --name "$KIND_CLUSTER" "$("$ROOT/scripts/image.sh" archive "$img")"
	done

	log "running the e2e suite"
	cd "$ROOT"
	KUBECONFIG=$KUBECONFIG_FILE KUBECTL=$KUBECTL HELM=$HELM HOPTRACE_E2E_IMAGE_TAG=$IMAGE_TAG \
		go test -tags e2e -count=1 -timeout "${E2E_TIMEOUT:-30m}" -v -run "${E2E_RUN:-.}" ./test/e2e/
}

main "$@"
