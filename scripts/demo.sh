#!/usr/bin/env bash
# make demo: build everything, start a loopback Jaeger, run the node in a box
# (real pods, real BPF, real agent) until Ctrl-C, then clean up all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

if [ "$(id -u)" -ne 0 ]; then
  echo "make demo loads BPF programs and creates network namespaces: run it as root (sudo make demo)" >&2
  exit 1
fi
scripts/install-deps.sh test
mkdir -p bin
go build -o bin/hoptrace ./cmd/hoptrace
go build -o bin/sampleapp ./cmd/sampleapp
go build -o bin/hoptrace-demo ./cmd/hoptrace-demo
scripts/jaeger.sh build

started_jaeger=
if ! scripts/jaeger.sh status >/dev/null 2>&1; then
  scripts/jaeger.sh start
  started_jaeger=1
fi
cleanup() { [ -n "$started_jaeger" ] && scripts/jaeger.sh stop; }
trap cleanup EXIT
bin/hoptrace-demo --bin bin "$@"
