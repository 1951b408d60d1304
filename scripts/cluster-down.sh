#!/usr/bin/env bash
# cluster-down.sh removes everything scripts/cluster-up.sh made, also after a
# failed or interrupted run: workloads (so each pod's CNI DEL runs and the
# agent removes its BPF pins), processes (by their pid files), containers left
# behind, mounts, cgroups, iptables chains, the bridge, the node interface, the
# state directory, and restores ip_forward, bridge-nf-call-iptables and the
# /sys/fs/bpf mount to what they were before the first cluster-up.
#
#   scripts/cluster-down.sh            tear down (keeps built binaries and images)
#
# Settings: see scripts/cluster-lib.sh (the same CLUSTER_STATE as cluster-up).
set -euo pipefail

# shellcheck source=scripts/cluster-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/cluster-lib.sh"

# Every step runs even if an earlier one failed: a half-torn-down node is the
# worst state to leave behind. Failures are counted and reported at the end.
FAILED=0
try() {
	"$@" || {
		log "warning: '$*' failed"
		FAILED=$((FAILED + 1))
	}
}

delete_workloads() {
	running_pid kube-apiserver >/dev/null || return 0
	running_pid kubelet >/dev/null || return 0
	log "deleting workloads"
	# Controllers first, so nothing recreates the pods being deleted; then every
	# pod, gracefully: the hoptrace agent removes its BPF pins on SIGTERM.
	kubectl_admin delete daemonsets,deployments,statefulsets,replicasets,jobs,cronjobs --all -A \
		--wait=false --ignore-not-found >/dev/null 2>&1 || true
	kubectl_admin delete pods --all -A --wait=true --timeout=90s --ignore-not-found >/dev/null 2>&1 || {
		log "pods still terminating after 90s; forcing"
		kubectl_admin delete pods --all -A --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
	}
	# The kubelet stops each deleted pod's sandbox (CNI DEL) shortly after the
	# pod object is gone; give it a moment to finish.
	local i
	for ((i = 0; i < 30; i++)); do
		[[ -z $(ctr_k8s tasks ls -q 2>/dev/null) ]] && break
		sleep 0.5
	done
}

ctr_k8s() {
	ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"
}

# kill_containers removes tasks and containers the kubelet did not stop.
kill_containers() {
	running_pid containerd >/dev/null || return 0
	local id
	for id in $(ctr_k8s tasks ls -q 2>/dev/null); do
		ctr_k8s tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
	done
	sleep 1
	for id in $(ctr_k8s tasks ls -q 2>/dev/null); do
		ctr_k8s tasks delete -f "$id" >/dev/null 2>&1 || true
	done
	for id in $(ctr_k8s containers ls -q 2>/dev/null); do
		ctr_k8s containers delete "$id" >/dev/null 2>&1 || true
	done
}

stop_components() {
	local name pid wait
	for name in $(echo "$COMPONENTS" | tr ' ' '\n' | tac); do
		if pid=$(running_pid "$name"); then
			wait=15
			[[ $name == etcd ]] && wait=30
			log "stopping $name (pid $pid)"
			stop_pid "$pid" "$wait"
		fi
		rm -f "$RUN/$name.pid"
	done
}

# kill_shims stops containerd shims that outlived containerd: those started for
# this cluster's containerd (its socket is on their command line).
kill_shims() {
	local cmdline pid
	for cmdline in /proc/[0-9]*/cmdline; do
		pid=${cmdline#/proc/}
		pid=${pid%/cmdline}
		if tr '\0' ' ' 2>/dev/null <"$cmdline" | grep -q "^/usr/bin/containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK "; then
			log "killing leftover shim $pid"
			# The shim's children are the pod's processes; they die with their
			# pid namespace's init once the shim is gone.
			pkill -KILL -P "$pid" 2>/dev/null || true
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
}

# unmount_under removes every mount below a directory, deepest first.
unmount_under() {
	local dir=$1 m
	[[ -d $dir ]] || return 0
	while read -r m; do
		[[ -n $m ]] || continue
		umount -l "$m" 2>/dev/null || true
	done < <(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
}

remove_netns() {
	local ns
	for ns in /var/run/netns/cni-*; do
		[[ -e $ns ]] || continue
		grep -qxF "$ns" "$STATE/netns-before" 2>/dev/null && continue
		umount "$ns" 2>/dev/null || true
		rm -f "$ns"
	done
}

# remove_cgroups removes the kubelet's empty pod cgroups (kubepods) from every
# hierarchy, deepest first; a cgroup still holding a process stays, and is
# reported.
remove_cgroups() {
	local mp dir left=0
	while read -r mp; do
		[[ -d $mp/kubepods ]] || continue
		while read -r dir; do
			rmdir "$dir" 2>/dev/null || left=1
		done < <(find "$mp/kubepods" -depth -type d)
	done < <(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) ~ /^cgroup2?$/) print $5; break } }' /proc/self/mountinfo)
	[[ $left -eq 0 ]] || log "warning: some kubepods cgroups still hold processes"
}

# remove_chains deletes the chains made by kube-proxy (KUBE-*), the kubelet
# (KUBE-*), the CNI plugins (CNI-*) and cluster-up (the guard), and every jump to
# them from the built-in chains.
remove_chains() {
	local cmd=$1 table rule chain
	command -v "$cmd" >/dev/null 2>&1 || return 0
	for table in filter nat mangle raw; do
		"$cmd" -w -t "$table" -S >/dev/null 2>&1 || continue
		# Jumps from built-in chains first, or the chains cannot be deleted.
		while read -r rule; do
			# shellcheck disable=SC2086 # the rule is a list of iptables words
			"$cmd" -w -t "$table" ${rule/-A/-D} 2>/dev/null || true
		done < <("$cmd" -w -t "$table" -S | grep -E "^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j (KUBE-|CNI-|$GUARD_CHAIN)")
		for chain in $("$cmd" -w -t "$table" -S | awk '$1 == "-N" && ($2 ~ /^(KUBE-|CNI-)/ || $2 == "'"$GUARD_CHAIN"'") { print $2 }'); do
			"$cmd" -w -t "$table" -F "$chain" 2>/dev/null || true
		done
		for chain in $("$cmd" -w -t "$table" -S | awk '$1 == "-N" && ($2 ~ /^(KUBE-|CNI-)/ || $2 == "'"$GUARD_CHAIN"'") { print $2 }'); do
			"$cmd" -w -t "$table" -X "$chain" 2>/dev/null || log "warning: cannot delete $cmd $table $chain"
		done
	done
}

restore_sysctl() {
	local file=$STATE/orig/$1 path=$2 v
	[[ -f $file ]] || return 0
	v=$(cat "$file")
	[[ $v == absent || ! -w $path ]] || echo "$v" >"$path"
}

restore_bpffs() {
	local prop mounted
	prop=$(cat "$STATE/orig/bpffs-propagation" 2>/dev/null || echo shared)
	mounted=$(cat "$STATE/orig/bpffs-mounted" 2>/dev/null || echo no)
	if [[ -d /sys/fs/bpf/hoptrace ]]; then
		log "warning: /sys/fs/bpf/hoptrace still exists (an agent did not clean up)"
	fi
	findmnt -n -t bpf /sys/fs/bpf >/dev/null 2>&1 || return 0
	if [[ $mounted == yes ]]; then
		umount /sys/fs/bpf 2>/dev/null || log "warning: cannot unmount /sys/fs/bpf (pins in use?)"
		return 0
	fi
	case $prop in
	private) mount --make-private /sys/fs/bpf ;;
	slave) mount --make-slave /sys/fs/bpf ;;
	unbindable) mount --make-unbindable /sys/fs/bpf ;;
	esac
}

remove_fixed_paths() {
	local p
	[[ -f $STATE/created-paths ]] || return 0
	while read -r p; do
		[[ -n $p && -e $p ]] || continue
		unmount_under "$p"
		rm -rf "$p"
	done <"$STATE/created-paths"
}

down() {
	need_root
	if [[ ! -d $STATE ]]; then
		log "no cluster state at $STATE; checking for leftovers anyway"
	fi
	try delete_workloads
	try kill_containers
	# kube-proxy's own cleanup knows its iptables rules best.
	if [[ -x $BIN_DIR/kube-proxy ]] && running_pid kube-proxy >/dev/null; then
		try stop_pid "$(running_pid kube-proxy)" 10
		"$BIN_DIR/kube-proxy" --cleanup >/dev/null 2>&1 || true
	fi
	try stop_components
	try kill_shims
	try remove_netns
	try unmount_under "$STATE"
	try remove_fixed_paths
	try remove_cgroups
	try remove_chains iptables
	try remove_chains ip6tables
	if ip link show "$BRIDGE" >/dev/null 2>&1; then
		try ip link del "$BRIDGE"
	fi
	# Pod-side veth ends die with their netns; host ends left by a failed CNI
	# DEL are on the (now deleted) bridge and went with it.
	if ip link show "$NODE_IF" >/dev/null 2>&1; then
		try ip link del "$NODE_IF"
	fi
	try restore_sysctl ip_forward /proc/sys/net/ipv4/ip_forward
	try restore_sysctl bridge-nf-call-iptables /proc/sys/net/bridge/bridge-nf-call-iptables
	try restore_bpffs
	if [[ -d $STATE ]]; then
		try unmount_under "$STATE"
		try rm -rf "$STATE"
	fi
	if [[ $FAILED -gt 0 ]]; then
		die "$FAILED teardown step(s) failed; see the warnings above"
	fi
	log "cluster down"
}

down "$@"
