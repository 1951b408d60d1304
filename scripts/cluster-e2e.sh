#!/usr/bin/env bash
# cluster-e2e.sh runs the Kubernetes end-to-end suite (test/e2e, build tag e2e)
# on a real single-node cluster on this machine, as root:
#
#   1. scripts/cluster-up.sh          build what is missing, boot the cluster
#   2. scripts/image.sh build+import  the agent, sample app, Jaeger and probe images
#                                     (rebuilt from the working tree every time)
#   3. go test -tags e2e ./test/e2e   with this cluster's KUBECONFIG
#   4. scripts/cluster-down.sh        always, even when a step failed
#                                     (KEEP_CLUSTER=1 keeps the cluster for debugging)
#
# The suite is the same one scripts/kind-e2e.sh runs on kind; only the node
# paths differ: this machine has hybrid cgroups (cgroup2 at
# /sys/fs/cgroup/unified), and other engineers' agents and tests share its
# bpffs, admin port and /var/run, so the release uses paths of its own.
#
# Environment: E2E_RUN (a go test -run pattern), E2E_TIMEOUT (default 20m),
# KEEP_CLUSTER=1, and everything scripts/cluster-lib.sh reads.
set -euo pipefail

# shellcheck source=scripts/cluster-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/cluster-lib.sh"

need_root
T0=$SECONDS
down() {
	local rc=$?
	if [[ ${KEEP_CLUSTER:-0} == 1 ]]; then
		log "KEEP_CLUSTER=1: the cluster stays up (scripts/cluster-down.sh removes it)"
		log "export KUBECONFIG=$KUBECONFIG_ADMIN"
	else
		"$CLUSTER_ROOT/scripts/cluster-down.sh" || rc=1
	fi
	log "total $((SECONDS - T0))s"
	exit "$rc"
}
trap down EXIT

"$CLUSTER_ROOT/scripts/cluster-up.sh"
T1=$SECONDS
IMAGE_TAG=$IMAGE_TAG "$CLUSTER_ROOT/scripts/image.sh" build hoptrace sampleapp nodeprobe
CONTAINERD_ADDRESS=$CONTAINERD_SOCK IMAGE_TAG=$IMAGE_TAG "$CLUSTER_ROOT/scripts/image.sh" import hoptrace sampleapp jaeger nodeprobe
T2=$SECONDS
log "cluster up ${T1}s, images $((T2 - T1))s; running the e2e suite"

cd "$CLUSTER_ROOT"
KUBECONFIG=$KUBECONFIG_ADMIN \
	KUBECTL=$BIN_DIR/kubectl HELM=$BIN_DIR/helm \
	HOPTRACE_E2E_IMAGE_TAG=$IMAGE_TAG \
	HOPTRACE_E2E_CGROUP2_PATH="$(cgroup2_root)" \
	HOPTRACE_E2E_PIN_DIR=/sys/fs/bpf/hoptrace-e2e \
	HOPTRACE_E2E_HELM_ARGS="--set host.runDir=/var/run/hoptrace-e2e --set admin.port=19464" \
	go test -tags e2e -count=1 -timeout "${E2E_TIMEOUT:-20m}" -v -run "${E2E_RUN:-.}" ./test/e2e/
log "e2e suite passed in $((SECONDS - T2))s"
