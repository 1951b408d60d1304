#!/usr/bin/env bash
# capturecost.sh: what capture costs per new connection, eBPF against
# iptables, attributed with perf over the whole machine (the kernel's work
# runs in the apps' and the proxies' contexts alike) rather than taken from
# two noisy throughputs. Runs benchrun's hoptrace-0 and iptables at
# http-close-max (one connection per request; SCENARIO sets another, then it
# is per request) K times each (default 3), alternating, records every CPU
# with perf during each measured run, and reports the rate and, per
# connection, the proxy process's CPU (its kernel work included) and the
# capture's (bench/cmd/perfshare -preset capture-bpf or capture-netfilter:
# hoptrace's BPF programs, socket storage and original-destination look-up;
# netfilter's hooks, conntrack and SO_ORIGINAL_DST). Given several
# directories of binaries (hoptrace, benchrun, otlpsink, iptproxy), it
# alternates them: an A/B.
#
#   sudo scripts/capturecost.sh                 # the tree, 3 runs of each
#   sudo K=5 scripts/capturecost.sh /tmp/a /tmp/b
#   sudo SCENARIO=http-max scripts/capturecost.sh   # per request, kept-alive
#
# Needs root, perf (apt-get install linux-perf) and the bench tools
# (make bench-tools). About 15 s per run.
me=capturecost.sh
# shellcheck source=scripts/perf-lib.sh
. "$(dirname "$0")/perf-lib.sh"
cpus=$(nproc)
scenario=${SCENARIO:-http-close-max}
unit=connection
[[ $scenario == http-close-* ]] || unit=request

for k in $(seq 1 "$K"); do
	for d in "${dirs[@]}"; do
		for setup in hoptrace-0 iptables; do
			out=$work/run-$k-$(basename "$d")-$setup
			"$d/benchrun" -bin-dir "$d" -fortio "$TOOLS/fortio" -nginx "$(command -v nginx)" -rounds 1 \
				-setups "$setup" -scenarios "$scenario" -out "$out.json" >"$out.log" 2>&1 &
			bench=$!
			proc=hoptrace preset=capture-bpf
			if [[ $setup == iptables ]]; then
				proc=iptproxy preset=capture-netfilter
			fi
			for _ in $(seq 1 300); do
				pgrep -f "^$d/$proc" >/dev/null && break
				sleep 0.1
			done
			sleep 4.4 # benchrun's warm-up (4.1 s), then into the measured run
			perf record -a -g -F 1999 -o "$out.perf" -- sleep 2.8 >/dev/null 2>&1
			if ! wait "$bench"; then
				log "benchrun failed: see $out.log"
				cat "$out.log" >&2
				exit 1
			fi
			perf script -i "$out.perf" -F comm,ip,sym 2>/dev/null >"$out.script"
			rm -f "$out.perf"
			share() { "$work/perfshare" -cpus "$cpus" -runs "$out.runs.json" "$@" <"$out.script"; }
			line=$(share -include '*' -comm "$proc")
			rate=$(sed -E 's/.*, ([0-9]+) req\/s.*/\1/' <<<"$line")
			printf '%s run %d %-10s %5s/s; per %s: %s %s, capture %s\n' "$d" "$k" "$setup" "$rate" "$unit" \
				"$proc" "${line##*: }" "$(share -preset "$preset" | sed 's/.*: //')"
			rm -f "$out.script"
		done
	done
done
