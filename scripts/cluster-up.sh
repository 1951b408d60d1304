#!/usr/bin/env bash
# cluster-up.sh boots a real single-node Kubernetes on this machine, as root,
# from the Go module proxy and Debian packages only (no Docker, no registry):
#
#   etcd (Debian etcd-server) · kube-apiserver, kube-controller-manager,
#   kube-scheduler, kubelet, kube-proxy (iptables mode), kubectl, all built from
#   k8s.io/kubernetes · containerd + runc (Debian) · CNI bridge/host-local/
#   loopback/portmap · CoreDNS serving cluster.local only · a locally built
#   pause image.
#
#   scripts/cluster-up.sh          build what is missing, start what is not running,
#                                  wait for the node and CoreDNS; prints KUBECONFIG
#   scripts/cluster-up.sh build    only build/install the binaries and base images
#   scripts/cluster-up.sh env      print "export KUBECONFIG=..." for this cluster
#
# It is idempotent: a second run starts only what is not running. Tear down with
# scripts/cluster-down.sh, which also cleans up after a failed run.
#
# The network rule: pods reach each other, the node, Services and loopback only.
# The CNI bridge does no masquerading, CoreDNS has no forward plugin, containerd
# is pointed at no registry, and a FORWARD guard drops any forwarded packet to an
# address outside the pod CIDR, the Service CIDR and the node address. The node
# address lives on an interface of its own; all servers bind to it or loopback.
#
# Settings: see scripts/cluster-lib.sh. Logs: $CLUSTER_STATE/logs.
set -euo pipefail

# shellcheck source=scripts/cluster-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/cluster-lib.sh"

START_TIMEOUT=${CLUSTER_START_TIMEOUT:-120}

install_packages() {
	local missing=() cmd pkg
	for cmd in etcd:etcd-server containerd:containerd runc:runc ctr:containerd iptables:iptables \
		conntrack:conntrack openssl:openssl ip:iproute2 findmnt:util-linux; do
		pkg=${cmd#*:}
		command -v "${cmd%%:*}" >/dev/null 2>&1 || missing+=("$pkg")
	done
	[[ ${#missing[@]} -eq 0 ]] && return
	log "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# Debian starts system services where a service manager runs; this cluster
	# runs its own instances and wants no second etcd or containerd.
	if command -v systemctl >/dev/null 2>&1; then
		systemctl disable --now etcd containerd >/dev/null 2>&1 || true
	fi
}

build_kube() {
	# scripts/kube-apiserver.sh owns the wrapper-module build (and skips binaries
	# already built at this version); the other components are built the same way.
	KUBE_VERSION=$KUBE_VERSION KUBE_BINARIES="kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy" \
		"$CLUSTER_ROOT/scripts/kube-apiserver.sh" build
}

build_cni() {
	local dir=$CACHE/cni/$CNI_PLUGINS_VERSION p
	if [[ ! -x $dir/portmap ]]; then
		log "building CNI plugins $CNI_PLUGINS_VERSION"
		mkdir -p "$dir"
		local m=github.com/containernetworking/plugins/plugins
		# Outside the project module, like every tool here: its dependencies are
		# not hoptrace's.
		(cd "$dir" && CGO_ENABLED=0 GOBIN=$dir GOFLAGS=-buildvcs=false go install -trimpath \
			"$m/main/bridge@$CNI_PLUGINS_VERSION" "$m/main/loopback@$CNI_PLUGINS_VERSION" \
			"$m/ipam/host-local@$CNI_PLUGINS_VERSION" "$m/meta/portmap@$CNI_PLUGINS_VERSION")
	fi
	mkdir -p "$CNI_BIN"
	for p in bridge loopback host-local portmap; do
		install -m 0755 "$dir/$p" "$CNI_BIN/$p"
	done
}

build_images() {
	IMAGE_TAG=$IMAGE_TAG "$CLUSTER_ROOT/scripts/image.sh" build pause coredns
}

build_all() {
	install_packages
	build_kube
	build_cni
	install_helm
	build_images
}

# record_fixed_paths notes which fixed paths exist before the cluster ever ran,
# once, so cluster-down removes only what the cluster made.
record_fixed_paths() {
	[[ -f $STATE/created-paths ]] && return
	local p created=() ns
	for p in $FIXED_PATHS; do
		[[ -e $p ]] || created+=("$p")
	done
	printf '%s\n' "${created[@]}" >"$STATE/created-paths"
	# containerd names each pod's network namespace cni-<uuid>.
	: >"$STATE/netns-before"
	for ns in /var/run/netns/cni-*; do
		[[ -e $ns ]] && echo "$ns" >>"$STATE/netns-before"
	done
	return 0
}

save_once() {
	# The value before the first cluster-up is what cluster-down restores.
	local file=$STATE/orig/$1 value=$2
	[[ -f $file ]] || echo "$value" >"$file"
}

setup_network() {
	save_once ip_forward "$(cat /proc/sys/net/ipv4/ip_forward)"
	save_once bridge-nf-call-iptables "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo absent)"

	# The node address, on an interface of its own. A dummy device where the
	# kernel has one, else a bridge without ports, which holds an address the
	# same way (these VMs' kernels lack CONFIG_DUMMY).
	if ! ip link show "$NODE_IF" >/dev/null 2>&1; then
		local other
		other=$(ip -o -4 addr show | awk -v ip="$NODE_IP" '$4 ~ "^"ip"/" { print $2 }' | head -n1)
		[[ -z $other ]] || die "$NODE_IP is already on $other; set CLUSTER_NODE_IP to an unused address"
		ip link add "$NODE_IF" type dummy 2>/dev/null || ip link add "$NODE_IF" type bridge
	fi
	ip addr replace "$NODE_IP/32" dev "$NODE_IF"
	ip link set "$NODE_IF" up

	# Service traffic between two pods on the bridge is DNATed on the way in; the
	# reply must cross iptables too or conntrack cannot undo the translation.
	if [[ -w /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
		echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
	else
		log "warning: br_netfilter is not available; pod-to-Service-to-pod replies may fail"
	fi

	# The guard: forwarded packets go to pods, Services (already translated to
	# pods by then) or the node, or nowhere. It lives in mangle FORWARD, which
	# runs before filter FORWARD, where kube-proxy puts its ACCEPT rules first.
	local ipt
	iptables -w -t mangle -N "$GUARD_CHAIN" 2>/dev/null || iptables -w -t mangle -F "$GUARD_CHAIN"
	iptables -w -t mangle -A "$GUARD_CHAIN" -d "$POD_CIDR" -j RETURN
	iptables -w -t mangle -A "$GUARD_CHAIN" -d "$SERVICE_CIDR" -j RETURN
	iptables -w -t mangle -A "$GUARD_CHAIN" -d "$NODE_IP/32" -j RETURN
	iptables -w -t mangle -A "$GUARD_CHAIN" -j DROP
	# Pods have no IPv6 addresses; forward none of theirs either.
	if command -v ip6tables >/dev/null 2>&1; then
		ip6tables -w -t mangle -N "$GUARD_CHAIN" 2>/dev/null || ip6tables -w -t mangle -F "$GUARD_CHAIN"
		ip6tables -w -t mangle -A "$GUARD_CHAIN" -j DROP
	fi
	for ipt in iptables ip6tables; do
		command -v "$ipt" >/dev/null 2>&1 || continue
		"$ipt" -w -t mangle -C FORWARD -j "$GUARD_CHAIN" 2>/dev/null ||
			"$ipt" -w -t mangle -I FORWARD 1 -j "$GUARD_CHAIN"
	done
}

# record_bpffs notes how /sys/fs/bpf is before the first cluster-up, for
# cluster-down to restore. It changes nothing: as on any node, the hoptrace
# DaemonSet's init container (hoptrace mount-bpffs) mounts a bpffs there if
# there is none and makes it a shared mount, which the agent's HostToContainer
# mount needs; the e2e suite checks that it does.
record_bpffs() {
	if findmnt -n -t bpf /sys/fs/bpf >/dev/null 2>&1; then
		save_once bpffs-mounted no
		save_once bpffs-propagation "$(findmnt -n -o PROPAGATION /sys/fs/bpf | head -n1)"
	else
		# "yes": none before the cluster, so cluster-down unmounts the one the
		# init container mounts.
		save_once bpffs-mounted yes
		save_once bpffs-propagation absent
	fi
}

# sign NAME SUBJECT [SAN...]: a key and a certificate from the cluster CA, for
# client and server use. ECDSA P-256: fast to make, accepted everywhere here.
sign() {
	local name=$1 subj=$2 san ext
	shift 2
	[[ -f $PKI/$name.crt ]] && return
	ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth"
	if [[ $# -gt 0 ]]; then
		san=$(printf '%s,' "$@")
		ext+=$'\n'"subjectAltName=${san%,}"
	fi
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
	openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
		-days 365 -sha256 -extfile <(echo "$ext") -out "$PKI/$name.crt" 2>/dev/null
	rm -f "$PKI/$name.csr"
	chmod 0600 "$PKI/$name.key"
}

make_pki() {
	mkdir -p "$PKI"
	chmod 0700 "$PKI"
	if [[ ! -f $PKI/ca.crt ]]; then
		openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-keyout "$PKI/ca.key" -subj "/CN=hoptrace-cluster-ca" -days 365 -sha256 \
			-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
			-out "$PKI/ca.crt" 2>/dev/null
	fi
	sign apiserver "/CN=kube-apiserver" "IP:$NODE_IP" IP:127.0.0.1 "IP:$API_SERVICE_IP" DNS:localhost \
		DNS:kubernetes DNS:kubernetes.default DNS:kubernetes.default.svc DNS:kubernetes.default.svc.cluster.local
	# The API server's identity towards kubelets (exec, logs, port-forward).
	sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
	sign admin "/O=system:masters/CN=hoptrace-cluster-admin"
	sign controller-manager "/CN=system:kube-controller-manager"
	sign scheduler "/CN=system:kube-scheduler"
	sign kube-proxy "/CN=system:kube-proxy"
	sign kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "IP:$NODE_IP" "DNS:$NODE_NAME"
	if [[ ! -f $PKI/sa.key ]]; then
		openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
		openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
		chmod 0600 "$PKI/sa.key"
	fi
}

# put FILE: write stdin to FILE only if it differs, so a second cluster-up does
# not touch running components' files (kube-proxy exits when its config changes).
put() {
	local file=$1 tmp
	tmp=$(mktemp "$file.XXXXXX")
	cat >"$tmp"
	if cmp -s "$tmp" "$file"; then
		rm -f "$tmp"
	else
		mv "$tmp" "$file"
	fi
}

kubeconfig() {
	local name=$1 cert=$2
	put "$STATE/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: hoptrace
    cluster:
      server: https://$NODE_IP:$API_PORT
      certificate-authority: $PKI/ca.crt
users:
  - name: $name
    user:
      client-certificate: $PKI/$cert.crt
      client-key: $PKI/$cert.key
contexts:
  - name: hoptrace
    context: {cluster: hoptrace, user: $name}
current-context: hoptrace
EOF
	chmod 0600 "$STATE/$name.kubeconfig"
}

write_configs() {
	kubeconfig admin admin
	kubeconfig controller-manager controller-manager
	kubeconfig scheduler scheduler
	kubeconfig kube-proxy kube-proxy
	kubeconfig kubelet kubelet

	mkdir -p "$CNI_CONF" "$STATE/containerd/certs.d"
	# ipMasq false: pod traffic is never rewritten to leave the node. host-local
	# keeps its leases in the state dir, not /var/lib/cni.
	put "$CNI_CONF/10-hoptrace.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "hoptrace-cluster",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

	# No registry exists and none may be contacted: every registry host resolves
	# to a closed local port, so a pull fails at once instead of leaving the node.
	local reg
	for reg in _default docker.io registry.k8s.io ghcr.io quay.io; do
		mkdir -p "$STATE/containerd/certs.d/$reg"
		put "$STATE/containerd/certs.d/$reg/hosts.toml" <<EOF
server = "http://127.0.0.1:9"
[host."http://127.0.0.1:9"]
  capabilities = ["pull", "resolve"]
EOF
	done

	put "$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$RUN/containerd.sock.ttrpc"
[debug]
  address = "$RUN/containerd-debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/hoptrace/pause:$IMAGE_TAG"
  # Required on these VMs: they drop CAP_SYS_RESOURCE, and without it every
  # sandbox fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$CNI_CONF"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$STATE/containerd/certs.d"
EOF

	put "$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
clusterDomain: cluster.local
clusterDNS: [$DNS_SERVICE_IP]
# No host resolver for pods: names outside cluster.local must not resolve.
resolvConf: ""
# Images cannot be pulled again here: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
serializeImagePulls: false
EOF

	put "$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $STATE/kube-proxy.kubeconfig
mode: iptables
hostnameOverride: $NODE_NAME
clusterCIDR: $CLUSTER_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# NodePorts on the node address only, never on the machine's real interfaces.
nodePortAddresses: ["$NODE_IP/32"]
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}

# start NAME ARGS...: run a component in its own session, logging to
# $LOGS/NAME.log, unless it already runs.
start() {
	local name=$1 pid
	shift
	if pid=$(running_pid "$name"); then
		log "$name already running (pid $pid)"
		return
	fi
	log "starting $name"
	setsid "$(component_bin "$name")" "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
	echo $! >"$RUN/$name.pid"
}

# wait_for NAME DESCRIPTION COMMAND...: poll until COMMAND succeeds, failing
# early with the log tail if the component dies.
wait_for() {
	local name=$1 what=$2 deadline=$((SECONDS + START_TIMEOUT))
	shift 2
	until "$@" >/dev/null 2>&1; do
		if [[ $name != - ]] && ! running_pid "$name" >/dev/null; then
			tail -n 30 "$LOGS/$name.log" >&2 || true
			die "$name exited while waiting for $what (log: $LOGS/$name.log)"
		fi
		((SECONDS < deadline)) || {
			[[ $name == - ]] || tail -n 30 "$LOGS/$name.log" >&2 || true
			die "timed out after ${START_TIMEOUT}s waiting for $what"
		}
		sleep 0.5
	done
}

api_ready() {
	curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
		"https://$NODE_IP:$API_PORT/readyz" >/dev/null
}

start_control_plane() {
	start etcd --name hoptrace-cluster --data-dir "$STATE/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "hoptrace-cluster=http://127.0.0.1:$ETCD_PEER_PORT" \
		--log-level warn
	wait_for etcd "etcd" curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

	start kube-apiserver --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--advertise-address "$NODE_IP" --bind-address "$NODE_IP" --secure-port "$API_PORT" \
		--tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
		--client-ca-file "$PKI/ca.crt" \
		--kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
		--kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
		--service-cluster-ip-range "$SERVICE_CIDR" \
		--authorization-mode Node,RBAC --allow-privileged=true \
		--enable-admission-plugins NodeRestriction --profiling=false \
		--cert-dir "$STATE/apiserver-certs"
	wait_for kube-apiserver "kube-apiserver /readyz" api_ready

	start kube-controller-manager --kubeconfig "$STATE/controller-manager.kubeconfig" \
		--authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
		--authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
		--bind-address 127.0.0.1 --leader-elect=false \
		--root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" \
		--use-service-account-credentials=true \
		--allocate-node-cidrs=true --cluster-cidr "$CLUSTER_CIDR" --node-cidr-mask-size 24 \
		--service-cluster-ip-range "$SERVICE_CIDR" \
		--cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
		--cert-dir "$STATE/controller-manager-certs"
	start kube-scheduler --kubeconfig "$STATE/scheduler.kubeconfig" \
		--authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
		--authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
		--bind-address 127.0.0.1 --leader-elect=false \
		--cert-dir "$STATE/scheduler-certs"
}

start_node() {
	start containerd --config "$STATE/containerd/config.toml" --log-level warn
	wait_for containerd "containerd" ctr --address "$CONTAINERD_SOCK" version
	CONTAINERD_ADDRESS=$CONTAINERD_SOCK IMAGE_TAG=$IMAGE_TAG "$CLUSTER_ROOT/scripts/image.sh" import pause coredns

	start kubelet --config "$STATE/kubelet.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
		--hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --root-dir "$STATE/kubelet" \
		--cert-dir "$STATE/kubelet-certs" --v 1
	start kube-proxy --config "$STATE/kube-proxy.yaml"
	wait_for kubelet "node $NODE_NAME Ready" kubectl_admin wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
}

deploy_coredns() {
	kubectl_admin apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
# cluster.local and the reverse zones only. No forward plugin: a name outside
# the cluster gets REFUSED here instead of a query leaving the machine.
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:53 {
        errors
        health {
            lameduck 5s
        }
        ready
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            ttl 30
        }
        cache 30
        loop
        reload
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  replicas: 1
  selector:
    matchLabels: {k8s-app: kube-dns}
  template:
    metadata:
      labels: {k8s-app: kube-dns}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      tolerations: [{operator: Exists}]
      containers:
        - name: coredns
          image: hoptrace/coredns:$IMAGE_TAG
          imagePullPolicy: Never
          args: [-conf, /etc/coredns/Corefile]
          ports:
            - {name: dns, containerPort: 53, protocol: UDP}
            - {name: dns-tcp, containerPort: 53, protocol: TCP}
          readinessProbe:
            httpGet: {path: /ready, port: 8181}
            periodSeconds: 2
          livenessProbe:
            httpGet: {path: /health, port: 8080}
            initialDelaySeconds: 10
          resources:
            requests: {cpu: 50m, memory: 32Mi}
            limits: {memory: 128Mi}
          volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes:
        - name: config
          configMap: {name: coredns}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  selector: {k8s-app: kube-dns}
  clusterIP: $DNS_SERVICE_IP
  ports:
    - {name: dns, port: 53, protocol: UDP}
    - {name: dns-tcp, port: 53, protocol: TCP}
EOF
	wait_for - "CoreDNS Ready" kubectl_admin -n kube-system rollout status deploy/coredns --timeout=2s
}

up() {
	need_root
	local t0=$SECONDS
	build_all
	local tb=$SECONDS
	mkdir -p "$STATE/orig" "$RUN" "$LOGS"
	record_fixed_paths
	setup_network
	record_bpffs
	make_pki
	write_configs
	start_control_plane
	start_node
	deploy_coredns
	log "cluster up: node $NODE_NAME ($NODE_IP), builds $((tb - t0))s, boot $((SECONDS - tb))s"
	log "cgroup2 at $(cgroup2_root); pods' cgroups: kubepods under each hierarchy"
	echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
}

case "${1:-up}" in
up) up ;;
build) build_all ;;
env) echo "export KUBECONFIG=$KUBECONFIG_ADMIN" ;;
*) die "usage: $0 [up|build|env]" ;;
esac
