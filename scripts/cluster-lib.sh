# shellcheck shell=bash disable=SC2034 # settings are used by the scripts that source this file
# cluster-lib.sh: settings and helpers shared by cluster-up.sh and
# cluster-down.sh (sourced, not run). See cluster-up.sh for what the cluster is.
#
# Environment (all optional):
#   HOPTRACE_CACHE        cache root for built binaries (default ~/.cache/hoptrace)
#   CLUSTER_STATE         state directory (default /var/lib/hoptrace-cluster)
#   CLUSTER_NODE_NAME     the node's name (default hoptrace-node)
#   CLUSTER_NODE_IP       the node's address, on an interface of its own
#                         (default 198.51.100.2, TEST-NET-2)
#   CLUSTER_API_PORT      kube-apiserver port on the node IP (default 6443)
#   CLUSTER_ETCD_PORT     etcd client port on 127.0.0.1 (default 12379; peer +1)
#   KUBE_VERSION          k8s.io/kubernetes version (default v1.34.2)
#   CNI_PLUGINS_VERSION   github.com/containernetworking/plugins (default v1.9.1)
#   IMAGE_TAG             tag of the locally built images (default dev)

CLUSTER_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${HOPTRACE_CACHE:-$HOME/.cache/hoptrace}
BIN_DIR=$CACHE/bin
STATE=${CLUSTER_STATE:-/var/lib/hoptrace-cluster}
NODE_NAME=${CLUSTER_NODE_NAME:-hoptrace-node}
# Not 192.0.2.2: on these machines eth0 itself holds 192.0.2.2/24, and the node
# address must be one nothing outside the machine routes to us.
NODE_IP=${CLUSTER_NODE_IP:-198.51.100.2}
NODE_IF=hoptrace-node
API_PORT=${CLUSTER_API_PORT:-6443}
ETCD_PORT=${CLUSTER_ETCD_PORT:-12379}
ETCD_PEER_PORT=$((ETCD_PORT + 1))
KUBE_VERSION=${KUBE_VERSION:-v1.34.2}
CNI_PLUGINS_VERSION=${CNI_PLUGINS_VERSION:-v1.9.1}
IMAGE_TAG=${IMAGE_TAG:-dev}

# The pod network is one bridge on the node; Services get virtual IPs from
# kube-proxy. Nothing else is reachable from a pod (see the FORWARD guard).
POD_CIDR=10.244.0.0/24
CLUSTER_CIDR=10.244.0.0/16
POD_GATEWAY=10.244.0.1
SERVICE_CIDR=10.96.0.0/12
API_SERVICE_IP=10.96.0.1
DNS_SERVICE_IP=10.96.0.10
BRIDGE=cni-hoptrace
GUARD_CHAIN=HOPTRACE-CLUSTER-GUARD

PKI=$STATE/pki
RUN=$STATE/run
LOGS=$STATE/logs
CNI_BIN=$STATE/cni/bin
CNI_CONF=$STATE/cni/net.d
CONTAINERD_SOCK=$RUN/containerd.sock
KUBECONFIG_ADMIN=$STATE/admin.kubeconfig
# Start order; cluster-down stops them in reverse.
COMPONENTS="etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy"
# Paths the components use whatever they are told; cluster-down removes those
# that cluster-up found missing (recorded in $STATE/created-paths).
FIXED_PATHS="/var/lib/kubelet /var/log/pods /var/log/containers /run/containerd /opt/containerd /var/lib/cni /var/run/hoptrace /var/run/hoptrace-e2e"

log() { echo "${0##*/}: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

need_root() {
	[[ $(id -u) -eq 0 ]] || die "run as root: the cluster needs containerd, iptables, mounts and cgroups"
}

# component_bin prints the binary a component runs, which is also what its
# pid is checked against, so a recycled pid is never mistaken for it.
component_bin() {
	case $1 in
	etcd) command -v etcd || echo /usr/bin/etcd ;;
	containerd) command -v containerd || echo /usr/bin/containerd ;;
	*) echo "$BIN_DIR/$1" ;;
	esac
}

# running_pid prints the pid of a component this cluster started, if it runs.
running_pid() {
	local name=$1 pidfile=$RUN/$1.pid pid exe
	[[ -f $pidfile ]] || return 1
	pid=$(cat "$pidfile")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
	exe=${exe% (deleted)}
	[[ $exe == "$(readlink -f "$(component_bin "$name")")" ]] || return 1
	# The state dir is on every component's command line: another cluster's
	# etcd or containerd is not ours.
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$STATE" || return 1
	echo "$pid"
}

# stop_pid sends TERM, waits up to $2 seconds, then KILLs.
stop_pid() {
	local pid=$1 wait=${2:-15} i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < wait * 5; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.2
	done
	log "pid $pid ignored SIGTERM for ${wait}s; killing it"
	kill -KILL "$pid" 2>/dev/null || true
	for ((i = 0; i < 25; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.2
	done
}

kubectl_admin() {
	"$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"
}

# The cgroup2 mount whose root is the hierarchy's root, as hoptrace finds it.
cgroup2_root() {
	awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2" && $4 == "/") print $5; break } }' \
		/proc/self/mountinfo | sort | head -n1
}

HELM_VERSION=${HELM_VERSION:-v3.22.0}

# install_helm builds helm from the Go module proxy into $BIN_DIR once. The
# ldflags are the ones helm's own Makefile sets: without them `helm version`
# is unstamped and `helm template` assumes Kubernetes v1.20, which charts with
# a kubeVersion constraint refuse.
install_helm() {
	local bin=$BIN_DIR/helm
	if [[ -x $bin && "$(cat "$bin.version" 2>/dev/null)" == "$HELM_VERSION" ]]; then
		return
	fi
	log "building helm $HELM_VERSION (about 3 minutes cold)"
	mkdir -p "$BIN_DIR"
	local gobin minor
	gobin=$(mktemp -d "$CACHE/helm-build.XXXXXX")
	minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
	(cd "$gobin" && CGO_ENABLED=0 GOBIN=$gobin GOFLAGS=-buildvcs=false go install -trimpath \
		-ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
			-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor \
			-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor" \
		"helm.sh/helm/v3/cmd/helm@$HELM_VERSION") || {
		rm -rf "$gobin"
		die "helm build failed"
	}
	mv "$gobin/helm" "$bin"
	rm -rf "$gobin"
	echo "$HELM_VERSION" >"$bin.version"
}
