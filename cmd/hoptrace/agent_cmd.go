package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hoptrace/hoptrace/agent"
	"github.com/hoptrace/hoptrace/exporter"
	"github.com/hoptrace/hoptrace/pods"
	"github.com/hoptrace/hoptrace/proxy"
	"github.com/hoptrace/hoptrace/redirect"
)

func newAgentCmd() *cobra.Command {
	var (
		cfg        = agent.Config{SampleRate: agent.DefaultSampleRate, ForcedTraceRate: agent.DefaultForcedTraceRate}
		podsFile   string
		kubeconfig string
		kube       bool
		logLevel   string
		cgroupRoot string
		procRoot   string
		excludeNS  []string
		pprofAddr  string
		meshNets   []string
		spliceIdle time.Duration
		memTarget  string
		coresFlag  string
	)
	exp, envErr := exporter.ConfigFromEnv(os.Getenv)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: capture pods, trace their requests, export spans",
		Long: `Run the hoptrace node agent (one per node, as root).

The agent finds this node's pods, steers their TCP traffic into its proxy with
eBPF (no iptables, no sidecar), records four spans per HTTP/gRPC hop and exports
them over OTLP. It serves an admin API on a unix socket for 'hoptrace pods' and
'hoptrace flows', with /healthz, /readyz and Prometheus /metrics. --admin-addr
serves /healthz, /readyz and /metrics on TCP too (for kubelet probes and
Prometheus); /pods and /flows, which show every pod's connections, stay on the
root-only socket unless --admin-addr-full.

Pods come from the Kubernetes API (this node's pods, NODE_NAME; in-cluster or
--kubeconfig) or from a local YAML file (--pods-file), for demos and tests:

  - name: hello                 # required
    namespace: demo             # default "default"
    netns: /run/netns/hello     # required: the pod's network namespace
    cgroup: /sys/fs/cgroup/demo/hello   # required: its cgroup v2 directory
    labels: {app: hello}        # app.kubernetes.io/name or app → service.name
    skipInboundPorts: [9090]    # optional
    skipOutboundPorts: [5432]   # optional

Kubernetes pods opt out with the annotation hoptrace.io/inject: disabled and
exclude ports with hoptrace.io/skip-inbound-ports / skip-outbound-ports.

Sampling: requests that arrive with a trace context follow its decision; others
start a trace with probability --sample-rate; a request header
"hoptrace-sample: 1" (or B3 debug) forces one, at most --forced-trace-rate per
second and pod. hoptrace-sample is removed before the app sees it.

Only requests from inside the mesh may decide or force sampling: from a pod
this agent captures, or from an address in --mesh-networks (list your pod
CIDRs there, so that other nodes' pods count too). For anyone else (an
ingress controller, a node, the internet) the sampled flag, B3 debug and
hoptrace-sample are ignored, and counted: the trace id carries on, so their
trace still links, but --sample-rate decides. --trust-external-sampling
believes everyone, as before.

Apps that forward no trace headers: with --infer-context, pods annotated
hoptrace.io/context: infer (pods file: inferContext: true) get each outbound
HTTP/1 request without trace context linked to the inbound request the app
was serving when it sent it, from what the kernel sees per thread; the
spans say hoptrace.context.inferred=true. Thread-per-request apps are linked;
ambiguous ones (event loops, Go) are left unlinked and counted. See
docs/inference.md.

The OTLP exporter also reads the standard OTEL_EXPORTER_OTLP_* variables
(ENDPOINT, PROTOCOL, HEADERS, TIMEOUT, COMPRESSION, CERTIFICATE, INSECURE and
their _TRACES_ forms); flags win over them.

On SIGTERM/SIGINT the agent drains its proxies, flushes spans and removes every
BPF program, link and pin (unless --keep-redirect-on-exit). If it is killed,
pods keep working (capture fails open) and the next agent adopts them.`,
		Example: `  # On a Kubernetes node (as the DaemonSet does)
  NODE_NAME=$(hostname) hoptrace agent --otlp-endpoint http://jaeger-collector:4317

  # With a local pods file, everything traced, spans to a local Jaeger
  sudo hoptrace agent --pods-file pods.yaml --sample-rate 1 --otlp-endpoint http://127.0.0.1:4317

  # Keep capture in place across a quick restart
  sudo hoptrace agent --pods-file pods.yaml --keep-redirect-on-exit`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if envErr != nil {
				return fmt.Errorf("OTEL_EXPORTER_OTLP_* environment: %w", envErr)
			}
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
			}
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			cfg.Exporter = exp
			nets, err := agent.ParseMeshNetworks(meshNets)
			if err != nil {
				return fmt.Errorf("--mesh-networks: %w", err)
			}
			cfg.MeshNetworks = nets
			switch {
			case spliceIdle < 0:
				return fmt.Errorf("--splice-idle-timeout %v: want a positive duration, or 0 for never", spliceIdle)
			case spliceIdle == 0:
				cfg.SpliceIdleTimeout = -1 // never
			default:
				cfg.SpliceIdleTimeout = spliceIdle
			}
			if cfg.NodeName == "" {
				cfg.NodeName = os.Getenv("NODE_NAME")
			}
			if podsFile != "" {
				cfg.Sources = append(cfg.Sources, &pods.FileSource{Path: podsFile})
			}
			if kube || kubeconfig != "" || (podsFile == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != "") {
				src, err := kubeSource(kubeconfig, cfg.NodeName, cgroupRoot, procRoot, excludeNS, cfg.Logger)
				if err != nil {
					return err
				}
				cfg.Sources = append(cfg.Sources, src)
			}
			stopMem, err := startMemoryTarget(memTarget, cfg.Logger)
			if err != nil {
				return err
			}
			defer stopMem()
			stopCores, err := startCores(coresFlag, cmd.Flags().Changed("cores"), cfg.Logger)
			if err != nil {
				return err
			}
			defer stopCores()
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			if pprofAddr != "" {
				if err := servePprof(pprofAddr, cfg.Logger); err != nil {
					return err
				}
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return a.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&podsFile, "pods-file", "", "YAML file listing the pods to capture (re-read when it changes)")
	f.BoolVar(&kube, "kubernetes", false, "watch this node's pods in Kubernetes (default when running in a cluster)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig for the Kubernetes pod source (implies --kubernetes; default in-cluster)")
	f.StringVar(&cfg.NodeName, "node-name", "", "this node's name in Kubernetes (default $NODE_NAME)")
	f.StringSliceVar(&excludeNS, "exclude-namespace", nil, "never capture pods of this Kubernetes namespace (repeatable), e.g. --exclude-namespace kube-system")
	f.StringVar(&cgroupRoot, "cgroup-root", "", "the host's cgroup v2 mount, where pods' cgroups are found (default: read from the mount table)")
	f.StringVar(&procRoot, "proc-root", "/proc", "the host's procfs, where pods' network namespaces are found (needs hostPID or a host /proc mount)")
	f.Float64Var(&cfg.SampleRate, "sample-rate", agent.DefaultSampleRate, "probability (0..1) of tracing a request that arrives without trace context")
	f.Float64Var(&cfg.ForcedTraceRate, "forced-trace-rate", agent.DefaultForcedTraceRate, "traces per second each pod's requests may force with hoptrace-sample or B3 debug (burst: one second's worth; 0 refuses them); beyond it they get the normal decision")
	f.DurationVar(&spliceIdle, "splice-idle-timeout", proxy.DefaultSpliceIdleTimeout, "close a relayed connection (not HTTP: TLS, databases, WebSocket and CONNECT tunnels) when neither side sent anything for this long; both sides get a FIN (0: never)")
	f.StringSliceVar(&meshNets, "mesh-networks", nil, "comma-separated CIDRs whose clients may decide and force sampling like captured pods, e.g. the cluster's pod CIDRs 10.244.0.0/16,fd00:10:244::/56")
	f.BoolVar(&cfg.TrustExternalSampling, "trust-external-sampling", false, "let every client decide and force sampling (sampled flags, B3 debug, hoptrace-sample), not only pods inside the mesh")
	f.BoolVar(&cfg.InferContext, "infer-context", false, "load the context-inference programs, so pods annotated hoptrace.io/context: infer are traced without forwarding headers (docs/inference.md)")
	f.StringSliceVar(&cfg.Routes, "route", nil, `route pattern naming spans "METHOD /pattern" instead of "METHOD" (repeatable), e.g. --route '/users/{id}'`)
	f.StringSliceVar(&cfg.CaptureHeaders, "capture-header", nil, "record this request and response header on every span, as http.request.header.<name> and http.response.header.<name> (repeatable), e.g. --capture-header x-request-id; values reach the trace backend as sent, so never name one that carries credentials")
	f.BoolVar(&cfg.RecordQuery, "record-query", false, "record query strings on spans (url.query, and in url.full); off by default because queries often carry tokens")
	f.StringVar(&cfg.AdminSocket, "admin-socket", agent.DefaultAdminSocket, "unix socket of the admin API (pods, flows, metrics)")
	f.StringVar(&cfg.AdminAddr, "admin-addr", "", "also serve /healthz, /readyz and /metrics on this TCP address, e.g. 127.0.0.1:9464 (probes, Prometheus)")
	f.BoolVar(&cfg.AdminAddrFull, "admin-addr-full", false, "serve the whole admin API on --admin-addr, /pods and /flows too (default: on the admin socket only, they show every pod's connections)")
	f.StringVar(&cfg.PinDir, "pin-dir", redirect.DefaultPinDir, "bpffs directory for hoptrace's pinned BPF programs, links and maps")
	f.BoolVar(&cfg.FastPath, "fast-path", false, "move what apps send to the agent on in-pod loopback legs with sk_msg instead of through loopback TCP (docs/redirect.md; off by default: docs/benchmarks.md)")
	f.BoolVar(&cfg.LocalHandoff, "local-handoff", true, "between two pods of this node, pass a hop's bytes in memory from one proxy to the other once the kernel made their TCP connection (network policy still decides on it; docs/proxy.md \"Local hand-off\")")
	f.BoolVar(&cfg.KeepRedirectOnExit, "keep-redirect-on-exit", false, "leave BPF capture pinned on exit so a restarted agent adopts it (pods fail open meanwhile)")
	f.BoolVar(&cfg.SelfTrace, "self-trace", false, "trace the agent's own operations (pod attach/detach, BPF load) to the same OTLP endpoint")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&memTarget, "memory-target", defaultMemoryTarget, "keep the agent's Go memory (heap, stacks, runtime; not the binary's pages) near this size: the garbage collector runs earlier rather than let the heap double, but always leaves it a quarter of the live heap as headroom; capped by GOMEMLIMIT or 90% of the cgroup's memory limit (off: Go's default, GOGC only)")
	f.StringVar(&coresFlag, "cores", "auto", "how many CPUs run the agent's Go code at once (GOMAXPROCS): auto follows the load, from 1 up to the CPUs the agent may use (its cgroup's CPU limit), because every idle one costs a wake-up per request; or a fixed count; a GOMAXPROCS variable fixes it too")
	f.StringVar(&pprofAddr, "pprof-addr", "", "serve Go's pprof profiles on this address, e.g. 127.0.0.1:6060 (off by default)")
	exp.BindFlags(f)
	cmd.Flags().SortFlags = false
	return cmd
}
