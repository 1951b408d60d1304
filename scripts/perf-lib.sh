# shellcheck shell=bash disable=SC2034 # settings are used by the scripts that source this file
# perf-lib.sh: the set-up shared by tracecost.sh and capturecost.sh (sourced,
# not run; the caller names itself in $me). After it: the repo is the working
# directory, $TOOLS holds fortio, $work is a scratch directory removed on exit
# with perfshare built into it, and dirs=() lists the directories of binaries
# to alternate (the arguments, or the tree built into $work/tree).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
K=${K:-3}
TOOLS=${HOPTRACE_CACHE:-$HOME/.cache/hoptrace}/bin
log() { echo "$me: $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
	log "benchrun creates namespaces and loads BPF: run as root"
	exit 1
fi
if ! command -v perf >/dev/null; then
	log "installing perf"
	apt-get install -y -qq linux-perf >/dev/null
fi
if [[ ! -x $TOOLS/fortio ]] || ! command -v nginx >/dev/null; then
	BENCH_TOOLS_ONLY=1 scripts/bench.sh
fi
work=$(mktemp -d "/tmp/hoptrace-${me%.sh}.XXXXXX")
trap 'rm -rf "$work"' EXIT
go build -o "$work/perfshare" ./bench/cmd/perfshare
dirs=("$@")
if [[ ${#dirs[@]} -eq 0 ]]; then
	log "building the tree into $work/tree"
	mkdir -p "$work/tree"
	CGO_ENABLED=0 go build -trimpath -o "$work/tree/hoptrace" ./cmd/hoptrace
	go build -o "$work/tree/" ./bench/cmd/benchrun ./bench/cmd/otlpsink ./bench/cmd/iptproxy
	dirs=("$work/tree")
fi
