#!/usr/bin/env bash
# tracecost.sh: what tracing costs the agent per request, attributed with
# perf rather than taken as the difference of two noisy runs. Runs benchrun's
# hoptrace-100 at http-max K times (default 3), records the agent with perf
# during each measured run, and reports the share of its samples in tracing
# code (bench/cmd/perfshare: span building, the export queue, the exporter's
# worker) times its CPU per request. Given several directories of binaries
# (hoptrace, benchrun, otlpsink, iptproxy), it alternates them: an A/B.
#
#   sudo scripts/tracecost.sh                 # the tree, 3 runs
#   sudo K=5 scripts/tracecost.sh /tmp/a /tmp/b
#
# Needs root, perf (apt-get install linux-perf) and the bench tools
# (make bench-tools). About 15 s per run.
me=tracecost.sh
# shellcheck source=scripts/perf-lib.sh
. "$(dirname "$0")/perf-lib.sh"

for k in $(seq 1 "$K"); do
	for d in "${dirs[@]}"; do
		out=$work/run-$k-$(basename "$d")
		"$d/benchrun" -bin-dir "$d" -fortio "$TOOLS/fortio" -nginx "$(command -v nginx)" -rounds 1 \
			-setups hoptrace-100 -scenarios http-max -out "$out.json" >"$out.log" 2>&1 &
		bench=$!
		pid=
		for _ in $(seq 1 300); do
			pid=$(pgrep -f "^$d/hoptrace agent" | head -1 || true)
			[[ -n $pid ]] && break
			sleep 0.1
		done
		if [[ -z $pid ]]; then
			wait "$bench" || true
			log "no agent process from $d: see $out.log"
			cat "$out.log" >&2
			exit 1
		fi
		sleep 4.4 # benchrun's warm-up (4.1 s), then into the measured run
		perf record -F 1999 -g -p "$pid" -o "$out.perf" -- sleep 2.8 >/dev/null 2>&1
		wait "$bench"
		printf '%s run %d: ' "$d" "$k"
		perf script -i "$out.perf" 2>/dev/null | "$work/perfshare" -runs "$out.runs.json"
		rm -f "$out.perf"
	done
done
