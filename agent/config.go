// Package agent is the hoptrace node agent: it finds the node's pods, captures
// their traffic with the redirect layer, serves it with tracing proxies, exports
// the spans, and answers the CLI on its admin socket.
package agent

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/hoptrace/hoptrace/exporter"
	"github.com/hoptrace/hoptrace/pods"
)

// DefaultAdminSocket is where the agent listens for the CLI.
const DefaultAdminSocket = "/var/run/hoptrace/admin.sock"

// DefaultSampleRate is the share of requests without trace context that start a
// trace, as low as Linkerd's default: requests that arrive with a sampled
// context are always traced, and --sample-rate or the per-request header
// hoptrace-sample: 1 turn it up.
const DefaultSampleRate = 0.001

// DefaultForcedTraceRate is how many traces per second a pod's requests may
// force (hoptrace-sample, B3 debug) by default: plenty for someone debugging,
// while a client forcing every request cannot make the agent trace everything.
const DefaultForcedTraceRate = 100

// Config configures an Agent.
type Config struct {
	NodeName string
	Sources  []pods.Source // where pods come from; at least one

	PinDir             string // bpffs dir for pins ("" = redirect.DefaultPinDir)
	KeepRedirectOnExit bool   // leave BPF capture in place on shutdown, for a quick restart
	OutboundPort       uint16 // listener ports inside pods (0 = redirect defaults)
	InboundPort        uint16
	// FastPath moves the bytes apps send to the agent on in-pod loopback legs
	// with sk_msg instead of through loopback TCP (redirect.Config.FastPath).
	FastPath bool
	// LocalHandoff passes the bytes of hops between two pods of this node in
	// memory between the agent's two proxies, once the kernel made their TCP
	// connection (proxy.Handoff).
	LocalHandoff bool

	SampleRate float64
	Routes     []string // span-name route patterns, e.g. "/users/{id}"
	// CaptureHeaders names request and response headers recorded on every
	// span (http.request.header.<name>, http.response.header.<name>).
	CaptureHeaders []string
	// RecordQuery records query strings (url.query, and in url.full). Off
	// by default: queries often carry tokens.
	RecordQuery bool

	Exporter exporter.Config

	// Whose sampling headers count (sampled flags, B3 debug, hoptrace-sample):
	// the pods this agent captures, peers in MeshNetworks (other nodes' pods),
	// or everyone with TrustExternalSampling. Others' are ignored: the rate
	// decides for them.
	MeshNetworks          []netip.Prefix
	TrustExternalSampling bool
	// ForcedTraceRate rations the traces hoptrace-sample and B3 debug force,
	// per pod and second, with a burst of one second's worth; 0 refuses them
	// all. The CLI's default is DefaultForcedTraceRate.
	ForcedTraceRate float64
	// SpliceIdleTimeout closes a relayed byte stream (opaque, WebSocket,
	// CONNECT) silent both ways this long (0: proxy.DefaultSpliceIdleTimeout,
	// negative: never).
	SpliceIdleTimeout time.Duration

	AdminSocket string // unix socket for the CLI ("" = DefaultAdminSocket)
	AdminAddr   string // optional TCP address (e.g. 127.0.0.1:9464) for probes and Prometheus
	// AdminAddrFull serves /pods and /flows on AdminAddr too; without it they
	// are on the root-only socket only.
	AdminAddrFull bool

	// InferContext loads the context-inference programs, so that pods
	// annotated hoptrace.io/context: infer get their outbound requests linked
	// to the inbound ones without forwarding headers (docs/inference.md).
	InferContext bool

	// SelfTrace traces the agent's own operations (pod attach/detach, BPF load)
	// with the OpenTelemetry SDK to the same OTLP endpoint.
	SelfTrace bool

	// Reconcile is how often attached pods are checked (vanished netns) and
	// failed attaches retried (default 5s).
	Reconcile time.Duration
	// ShutdownTimeout bounds draining proxies and flushing spans (default 10s).
	ShutdownTimeout time.Duration

	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.AdminSocket == "" {
		c.AdminSocket = DefaultAdminSocket
	}
	if c.Reconcile <= 0 {
		c.Reconcile = 5 * time.Second
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// ParseMeshNetworks parses --mesh-networks: CIDRs (a bare address is a
// single-address network), blanks ignored. Errors name the bad entry.
func ParseMeshNetworks(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("mesh network %q: not a CIDR or an address", s)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("mesh network %q: %w", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
