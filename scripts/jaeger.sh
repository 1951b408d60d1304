#!/usr/bin/env bash
# jaeger.sh builds, starts and stops a loopback-only Jaeger v2 all-in-one for tests
# and the demo.
#
#   scripts/jaeger.sh build    build cmd/jaeger once into $HOPTRACE_CACHE/bin/jaeger
#   scripts/jaeger.sh start    start it (in-memory storage, 127.0.0.1 only), wait until ready
#   scripts/jaeger.sh stop     stop the instance this script started, by its pid file
#   scripts/jaeger.sh status   say whether it runs and where
#   scripts/jaeger.sh path     print the binary's path
#
# Environment (all optional):
#   HOPTRACE_CACHE          cache root (default ~/.cache/hoptrace)
#   JAEGER_VERSION          Go module version of github.com/jaegertracing/jaeger
#                           (v1.76.0 is the module tag of Jaeger v2.13.0)
#   JAEGER_RUN_DIR          where config, log and pid file live (default $HOPTRACE_CACHE/jaeger)
#   JAEGER_OTLP_GRPC_PORT   default 4317
#   JAEGER_OTLP_HTTP_PORT   default 4318
#   JAEGER_QUERY_PORT       default 16686 (UI and /api/*)
#   JAEGER_ZIPKIN_PORT      default 9411
#   JAEGER_HEALTH_PORT      default 13133 (readiness is polled here)
#   JAEGER_START_TIMEOUT    seconds to wait for readiness (default 60)
set -euo pipefail

JAEGER_VERSION=${JAEGER_VERSION:-v1.76.0}
CACHE=${HOPTRACE_CACHE:-$HOME/.cache/hoptrace}
BIN=$CACHE/bin/jaeger
RUN_DIR=${JAEGER_RUN_DIR:-$CACHE/jaeger}
PID_FILE=$RUN_DIR/jaeger.pid
CONFIG=$RUN_DIR/config.yaml
LOG=$RUN_DIR/jaeger.log
GRPC_PORT=${JAEGER_OTLP_GRPC_PORT:-4317}
HTTP_PORT=${JAEGER_OTLP_HTTP_PORT:-4318}
QUERY_PORT=${JAEGER_QUERY_PORT:-16686}
ZIPKIN_PORT=${JAEGER_ZIPKIN_PORT:-9411}
HEALTH_PORT=${JAEGER_HEALTH_PORT:-13133}
START_TIMEOUT=${JAEGER_START_TIMEOUT:-60}

log() { echo "jaeger.sh: $*" >&2; }
die() { log "$*"; exit 1; }

build() {
	if [[ -x $BIN && "$(cat "$BIN.version" 2>/dev/null)" == "$JAEGER_VERSION" ]]; then
		log "$BIN is $JAEGER_VERSION already"
		return
	fi
	mkdir -p "$CACHE/bin"
	local work
	work=$(mktemp -d "$CACHE/jaeger-build.XXXXXX")
	# shellcheck disable=SC2064 # expand now: $work is local
	trap "rm -rf '$work'" EXIT
	# Jaeger's own go.mod pins sarama with a replace directive, which a dependent
	# module does not inherit: the wrapper must repeat it or the build fails.
	cat >"$work/go.mod" <<MOD
module hoptrace.local/jaeger-build

go 1.25

require github.com/jaegertracing/jaeger $JAEGER_VERSION

replace github.com/Shopify/sarama => github.com/Shopify/sarama v1.33.0
MOD
	log "building github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION (takes minutes)"
	# GOSUMDB=off for this throwaway wrapper only, as DESIGN.md prescribes for this
	# build: it starts without a go.sum. The project's own module keeps checksum
	# verification.
	(
		cd "$work"
		export GOSUMDB=off GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false"
		go get "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION"
		CGO_ENABLED=${CGO_ENABLED:-0} go build -trimpath -o "$BIN.tmp" github.com/jaegertracing/jaeger/cmd/jaeger
	)
	mv "$BIN.tmp" "$BIN"
	echo "$JAEGER_VERSION" >"$BIN.version"
	log "built $BIN"
}

# config is shipped next to the Go test helper, so tests and the demo run the same
# Jaeger; it reads its ports from the JAEGER_* variables exported by start.
config_source() {
	local here
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
	echo "$here/../internal/jaegertest/jaeger.yaml"
}

running_pid() {
	[[ -f $PID_FILE ]] || return 1
	local pid
	pid=$(cat "$PID_FILE")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	# The pid must still be our jaeger: after a reboot or crash the number may
	# belong to something else, which stop must never kill.
	[[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$BIN --config $CONFIG" || return 1
	echo "$pid"
}

ready() {
	curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$HEALTH_PORT/status" &&
		curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$QUERY_PORT/api/services"
}

start() {
	[[ -x $BIN ]] || die "$BIN not found: run '$0 build' (make jaeger) first"
	if pid=$(running_pid); then
		log "already running (pid $pid)"
		status
		return
	fi
	mkdir -p "$RUN_DIR"
	cp "$(config_source)" "$CONFIG"
	cat >"$RUN_DIR/ports.env" <<ENV
JAEGER_OTLP_GRPC_PORT=$GRPC_PORT
JAEGER_OTLP_HTTP_PORT=$HTTP_PORT
JAEGER_QUERY_PORT=$QUERY_PORT
JAEGER_QUERY_GRPC_PORT=${JAEGER_QUERY_GRPC_PORT:-16685}
JAEGER_ZIPKIN_PORT=$ZIPKIN_PORT
JAEGER_HEALTH_PORT=$HEALTH_PORT
JAEGER_METRICS_PORT=${JAEGER_METRICS_PORT:-8888}
ENV
	(
		set -a
		# shellcheck disable=SC1091
		. "$RUN_DIR/ports.env"
		exec "$BIN" --config "$CONFIG" </dev/null >"$LOG" 2>&1
	) &
	local pid=$!
	echo "$pid" >"$PID_FILE"
	local deadline=$((SECONDS + START_TIMEOUT))
	until ready; do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$LOG" >&2
			rm -f "$PID_FILE"
			die "jaeger exited during start-up (log: $LOG)"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 20 "$LOG" >&2
			kill -KILL "$pid" 2>/dev/null || true
			rm -f "$PID_FILE"
			die "jaeger not ready after ${START_TIMEOUT}s (log: $LOG)"
		fi
		sleep 0.2
	done
	log "started (pid $pid)"
	status
}

stop() {
	local pid
	if ! pid=$(running_pid); then
		rm -f "$PID_FILE"
		log "not running"
		return
	fi
	kill -TERM "$pid"
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "pid $pid ignored SIGTERM for 10s; killing it"
		kill -KILL "$pid"
	fi
	rm -f "$PID_FILE"
	log "stopped (pid $pid)"
}

status() {
	local pid
	if ! pid=$(running_pid); then
		echo "jaeger: not running"
		return 3
	fi
	# shellcheck disable=SC1091
	. "$RUN_DIR/ports.env"
	cat <<STATUS
jaeger: running (pid $pid, log $LOG)
  OTLP gRPC  127.0.0.1:$JAEGER_OTLP_GRPC_PORT
  OTLP HTTP  http://127.0.0.1:$JAEGER_OTLP_HTTP_PORT
  query/UI   http://127.0.0.1:$JAEGER_QUERY_PORT
  zipkin     http://127.0.0.1:$JAEGER_ZIPKIN_PORT
STATUS
}

case "${1:-}" in
build) build ;;
start) start ;;
stop) stop ;;
status) status ;;
path) echo "$BIN" ;;
*) die "usage: $0 {build|start|stop|status|path}" ;;
esac
