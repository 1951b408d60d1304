#!/usr/bin/env bash
# make bench: load benchmarks of hoptrace against the physical limit (no proxy)
# and its peers (the same proxy behind iptables, nginx, Caddy) on a node in a
# box, the whole matrix repeated in rounds (benchrun -rounds), each round on
# fresh pods. Writes bench/results.json (medians over the rounds),
# results.runs.json (every run), results.meta.json and the "Load benchmarks
# (make bench)" section of docs/benchmarks.md. About 40 minutes: 17 for the
# matrix, 22 for the paired phase.
#
# Needs root: it creates network namespaces, veths and cgroups, loads BPF and
# installs iptables rules inside the benchmark pods' own namespaces. Everything
# is removed at the end, also on failure or Ctrl-C.
#
# Environment (all optional):
#   HOPTRACE_CACHE   cache root for fortio and caddy (default ~/.cache/hoptrace)
#   BENCH_ARGS       extra benchrun flags, e.g. "-duration 2s -rounds 2 -setups direct,hoptrace-100".
#                    With -out elsewhere than bench/results.json, bench/ and
#                    docs/ are left alone: the report goes next to the results
#                    (-out /tmp/r.json: /tmp/r.md).
#   BENCH_KEEP=1     keep the work dir (logs, configs, fortio JSON) afterwards
#   BENCH_REPORT_ONLY=1  only regenerate docs/benchmarks.md from bench/results.json
#   BENCH_TOOLS_ONLY=1   only install nginx, iptables and fortio (make bench-tools)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

FORTIO_VERSION=v1.63.0 # newer versions need a module the Go proxy here refuses
CADDY_VERSION=v2.11.9
CACHE=${HOPTRACE_CACHE:-$HOME/.cache/hoptrace}
TOOLS=$CACHE/bin

log() { echo "bench.sh: $*" >&2; }

# The results file benchrun writes: bench/results.json unless BENCH_ARGS says
# -out (the flag package takes the last one given).
RESULTS=bench/results.json
# shellcheck disable=SC2206 # BENCH_ARGS is a list of flags
args=(${BENCH_ARGS:-})
for ((i = 0; i < ${#args[@]}; i++)); do
	case ${args[i]} in
	-out | --out) RESULTS=${args[i + 1]:-} ;;
	-out=* | --out=*) RESULTS=${args[i]#*=} ;;
	esac
done
DOC=docs/benchmarks.md
if [[ $(realpath -m "$RESULTS") != $(realpath -m bench/results.json) ]]; then
	DOC=${RESULTS%.json}.md
fi

# The paired phase's results sit beside the matrix's: <results>.paired-<scenario>.json.
report() {
	local paired=() f
	for f in "${RESULTS%.json}".paired-*.json; do
		case $f in *.runs.json | *.meta.json) continue ;; esac
		[[ -f $f ]] && paired+=("$f")
	done
	go run ./bench/cmd/benchreport -results "$RESULTS" -doc "$DOC" -paired "$(
		IFS=,
		echo "${paired[*]}"
	)"
}

if [[ ${BENCH_REPORT_ONLY:-} == 1 ]]; then
	report
	exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
	log "make bench creates network namespaces and cgroups, loads BPF and sets iptables rules in its pods: run it as root (sudo make bench)"
	exit 1
fi

# Debian packages: iproute2 for the pods, nginx as a peer, iptables for the
# init-container style capture.
scripts/install-deps.sh test
missing=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v iptables >/dev/null 2>&1 || [[ -x /usr/sbin/iptables ]] || missing+=(iptables)
if [[ ${#missing[@]} -gt 0 ]]; then
	log "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
export PATH=$PATH:/usr/sbin:/sbin

# go_tool PKG VERSION NAME: go install PKG@VERSION into the cache once, outside
# this module so it never enters go.mod.
go_tool() {
	local pkg=$1 version=$2 name=$3
	if [[ -x $TOOLS/$name && "$(cat "$TOOLS/$name.version" 2>/dev/null)" == "$version" ]]; then
		return
	fi
	log "go install $pkg@$version (once, into $TOOLS)"
	mkdir -p "$TOOLS"
	(cd / && GOFLAGS=-mod=mod GOBIN=$TOOLS go install "$pkg@$version")
	echo "$version" >"$TOOLS/$name.version"
}
go_tool fortio.org/fortio "$FORTIO_VERSION" fortio
if [[ ${BENCH_TOOLS_ONLY:-} == 1 ]]; then
	# make test: what the harness's own test (bench/cmd/benchrun) needs. It
	# leaves Caddy out: a 5-minute build for one of six setups.
	exit 0
fi
go_tool github.com/caddyserver/caddy/v2/cmd/caddy "$CADDY_VERSION" caddy

WORK=$(mktemp -d /tmp/hoptrace-bench.XXXXXX)
ok=
cleanup() {
	# benchrun removes its node itself; this catches what a killed benchrun left.
	local id run
	for run in "$WORK"/run*; do
		id=$(cat "$run/node-id" 2>/dev/null || true)
		if [[ -n $id ]]; then
			local ns cg
			for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^ht-$id-" || true); do
				ip netns del "$ns" 2>/dev/null || true
			done
			cg=$(findmnt -n -t cgroup2 -o TARGET | head -n1)
			if [[ -n $cg && -d $cg/hoptrace-nodebox-$id ]]; then
				for d in "$cg/hoptrace-nodebox-$id"/*/; do
					[[ -f $d/cgroup.kill ]] && echo 1 >"$d/cgroup.kill" 2>/dev/null || true
				done
				sleep 0.5
				find "$cg/hoptrace-nodebox-$id" -depth -type d -exec rmdir {} + 2>/dev/null || true
			fi
			rm -rf "/sys/fs/bpf/hoptrace-bench-$id"
		fi
	done
	if [[ -n $ok && ${BENCH_KEEP:-} != 1 ]]; then
		rm -rf "$WORK"
	else
		log "logs kept in $WORK/run"
	fi
}
trap cleanup EXIT

log "building hoptrace and the bench programs into $WORK/bin"
# The agent is built as the image ships it (scripts/image.sh): static, stripped.
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)" -o "$WORK/bin/hoptrace" ./cmd/hoptrace
for c in benchrun otlpsink iptproxy; do
	go build -o "$WORK/bin/$c" "./bench/cmd/$c"
done

# Paired results of an earlier run must not be reported with this one's.
rm -f "${RESULTS%.json}".paired-*.json
# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
"$WORK/bin/benchrun" -bin-dir "$WORK/bin" -work-dir "$WORK/run" \
	-fortio "$TOOLS/fortio" -caddy "$TOOLS/caddy" -nginx "$(command -v nginx)" \
	-out bench/results.json -command "make bench${BENCH_ARGS:+ BENCH_ARGS='$BENCH_ARGS'}" ${BENCH_ARGS:-}

# The paired phase: each target's setups alone, back to back in every round.
# In the matrix they run minutes apart, and the machine's load (others' work on
# the same cores) can fall on one and not the other; its three rounds are too
# few for a sign test, which these rounds decide by (benchreport). Latency at
# 1,000 req/s gets 5-s runs: a 3-s run's p99 is its 30th-slowest request.
# latency-onecpu runs the latency phase again with every process on CPU 0
# (taskset; benchrun records the one CPU, and the report labels those rows):
# a wake-up from one CPU to the other is most of a hop's added latency on a
# VM (docs/benchmarks.md), and this reading shows what is left without it.
# Only after the whole matrix (no BENCH_ARGS); BENCH_PAIRED_ROUNDS sets every
# phase's rounds (default 12 for the ratios, 8 for latency), 0 skips them.
if [[ -z ${BENCH_ARGS:-} && ${BENCH_PAIRED_ROUNDS:-12} -gt 0 ]]; then
	for phase in "max hoptrace-100,hoptrace-0,nginx http-max,grpc-max 12 3s all" \
		"http-close-max hoptrace-0,iptables http-close-max 12 3s all" \
		"latency direct,hoptrace-100,nginx http-1k,grpc-1k 8 5s all" \
		"latency-onecpu direct,hoptrace-100,nginx http-1k,grpc-1k 8 5s 0"; do
		read -r name setups scenarios rounds duration cpus <<<"$phase"
		rounds=${BENCH_PAIRED_ROUNDS:-$rounds}
		pin=()
		if [[ $cpus != all ]]; then
			if (($(nproc) < 2)); then
				continue # one CPU already: the latency phase is this reading
			fi
			pin=(taskset -c "$cpus")
		fi
		log "paired: $setups at $scenarios, $rounds rounds of ${duration} runs${pin[*]:+ on CPU $cpus}"
		"${pin[@]}" "$WORK/bin/benchrun" -bin-dir "$WORK/bin" -work-dir "$WORK/run-paired-$name" \
			-fortio "$TOOLS/fortio" -nginx "$(command -v nginx)" \
			-rounds "$rounds" -duration "$duration" -setups "$setups" -scenarios "$scenarios" \
			-out "${RESULTS%.json}.paired-$name.json" -command "make bench (paired phase)"
	done
fi
report
ok=1
log "done: $RESULTS (+ ${RESULTS%.json}.runs.json, ${RESULTS%.json}.meta.json), $DOC"
