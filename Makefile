# hoptrace — see README.md. Every target installs what it needs (as root) first.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
export HOPTRACE_CACHE ?= $(HOME)/.cache/hoptrace
# Counts, not durations: Go 1.26 fuzzing can fail spuriously at a time deadline
# (golang/go#75804).
FUZZTIME ?= 50000x
# A fixed mutator seed (GODEBUG=fuzzseed, one worker) and a fresh corpus cache per
# target make `make fuzz` the same search on every machine, clean clone or not:
# a failure it finds is found again. FUZZSEED=random explores anew.
FUZZSEED ?= 1

.PHONY: all build generate verify-generate test unit-test fuzz lint clean demo deps \
	jaeger jaeger-start jaeger-stop kube-apiserver helm image cluster-up cluster-down \
	e2e-cluster e2e-kind bench bench-tools h2spec race-test

all: build

## deps: Debian packages for building BPF and running the tests (apt-get, as root)
deps:
	@scripts/install-deps.sh bpf test runtimes

## build: the hoptrace binary in bin/
build:
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o bin/hoptrace ./cmd/hoptrace

## generate: recompile the BPF C programs into the committed bpf2go output
generate:
	@scripts/install-deps.sh bpf
	$(GO) generate ./bpf/...

## verify-generate: fail if the committed BPF objects differ from a fresh build
verify-generate: generate
	@git diff --exit-code -- bpf/ || { echo "bpf/ is stale: run 'make generate' and commit the result" >&2; exit 1; }

## test: everything CI runs: lint, unit + privileged + end-to-end tests (real BPF,
## real Jaeger, real kube-apiserver), bounded fuzzing, and the Kubernetes e2e
## suite on a real local cluster
test: deps jaeger kube-apiserver helm bench-tools h2spec lint unit-test race-test fuzz e2e-cluster

unit-test:
	$(GO) test -count=1 -timeout 30m ./...
	@# The proxy's suite once more with every hop handed off in memory
	@# (proxy.Handoff): each path must behave the same over a memConn.
	HOPTRACE_TEST_HANDOFF=1 $(GO) test -count=1 -timeout 10m ./proxy/

## race-test: the unit and privileged tests again under the race detector (all but the demo's and the cluster e2e's, which run whole programs)
race-test:
	$(GO) test -race -count=1 -timeout 30m $$($(GO) list ./... | grep -v -e /internal/demo -e /test/e2e)
	HOPTRACE_TEST_HANDOFF=1 $(GO) test -race -count=1 -timeout 10m ./proxy/

## fuzz: run every fuzz target for FUZZTIME each
fuzz:
	@set -e; for spec in $$(scripts/fuzz-targets.sh); do \
		pkg=$${spec%%:*}; fn=$${spec##*:}; \
		echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
		cache=$$(mktemp -d); \
		seed=$$([ "$(FUZZSEED)" = random ] || echo "fuzzseed=$(FUZZSEED)"); \
		GODEBUG=$$seed $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) -parallel 1 "$$pkg" \
			-args -test.fuzzcachedir=$$cache >/tmp/hoptrace-fuzz.log 2>&1 || \
			{ cat /tmp/hoptrace-fuzz.log; rm -rf $$cache; exit 1; }; \
		rm -rf $$cache; \
	done

## lint: gofmt, go vet, and generated code up to date
lint: verify-generate
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt needed: $$out" >&2; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/

## demo: a node in a box with real pods, real BPF, the agent and a real Jaeger, until Ctrl-C
demo:
	@scripts/demo.sh $(DEMO_ARGS)

## jaeger: build the Jaeger all-in-one used by tests and the demo (cached)
jaeger:
	@scripts/jaeger.sh build

jaeger-start: jaeger
	@scripts/jaeger.sh start

jaeger-stop:
	@scripts/jaeger.sh stop

## kube-apiserver: kube-apiserver + kubectl v1.34.2 (cached) and Debian etcd-server, for the pod-source tests
kube-apiserver:
	@scripts/kube-apiserver.sh build

## h2spec: the HTTP/2 conformance suite the proxy's TestH2spec runs, from the Go module proxy into $HOPTRACE_CACHE/bin (cached)
h2spec:
	@scripts/h2spec.sh

## helm: build helm from the Go module proxy into $HOPTRACE_CACHE/bin (cached)
helm:
	@bash -c '. scripts/cluster-lib.sh && install_helm'

## image: the agent and sample-app images as OCI archives, without Docker (IMAGES, IMAGE_PLATFORMS, IMAGE_TAG)
image:
	@scripts/image.sh build $(or $(IMAGES),hoptrace sampleapp)

## cluster-up / cluster-down: a real single-node Kubernetes on this machine (root)
cluster-up:
	@scripts/cluster-up.sh

cluster-down:
	@scripts/cluster-down.sh

## e2e-cluster: cluster up, images built and imported, test/e2e, cluster down (always)
e2e-cluster:
	@scripts/cluster-e2e.sh

## e2e-kind: the same suite on kind, for machines with Docker
e2e-kind:
	@scripts/kind-e2e.sh

## bench: load benchmarks against direct, iptables, nginx and Caddy, and the hand-off-off, cross-node and Service-IP agent setups (root, ~15 min); writes bench/results.json and docs/benchmarks.md
bench:
	@scripts/bench.sh

## bench-tools: nginx, iptables and fortio for the harness's own test (part of make test)
bench-tools:
	@BENCH_TOOLS_ONLY=1 scripts/bench.sh

clean:
	rm -rf bin
	$(GO) clean -testcache
