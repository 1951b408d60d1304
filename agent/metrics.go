package agent

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hoptrace/hoptrace/exporter"
	"github.com/hoptrace/hoptrace/infer"
	"github.com/hoptrace/hoptrace/proxy"
	"github.com/hoptrace/hoptrace/redirect"
	"github.com/hoptrace/hoptrace/spans"
)

// latencyBuckets span 100µs (a proxy leg on loopback) to 10s (a slow upstream).
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	legSeconds   *prometheus.HistogramVec
	flows        *prometheus.CounterVec
	unserved     *prometheus.CounterVec // connections closed unserved (proxy.Refusal)
	refused      *prometheus.CounterVec // forced traces refused
	untrusted    *prometheus.CounterVec // untrusted sampling headers ignored
	discarded    *prometheus.CounterVec // upstreams closed for bytes beyond a response
	silent       *prometheus.CounterVec // spliced connections closed for silence
	breaches     *prometheus.CounterVec // clients' HTTP protocol errors
	attached     prometheus.Gauge
	attachErrors prometheus.Counter
	detached     *prometheus.CounterVec
	redirect     *redirectCollector
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hoptrace_requests_total",
			Help: "HTTP and gRPC requests proxied, by pod, direction, protocol and response class.",
		}, []string{"namespace", "pod", "direction", "protocol", "status_class"}),
		legSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hoptrace_leg_duration_seconds",
			Help:    "Time per proxy leg (outbound-server, outbound-client, inbound-server, inbound-client).",
			Buckets: latencyBuckets,
		}, []string{"namespace", "pod", "leg"}),
		flows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hoptrace_connections_total",
			Help: "Proxied connections that closed, by pod, direction and detected protocol.",
		}, []string{"namespace", "pod", "direction", "protocol"}),
		unserved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hoptrace_connections_refused_total",
			Help: "Connections the proxy closed without serving them (the app saw a reset), by pod, direction and reason: no-original-dst (capture's record of the destination was not found) or self (addressed to the proxy's own listener).",
		}, []string{"namespace", "pod", "direction", "reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hoptrace_forced_traces_refused_total",
			Help: "Requests whose forced trace (hoptrace-sample, B3 debug) the pod's --forced-trace-rate refused; they got the normal sampling decision.",
		}, []string{"namespace", "pod"}),
		untrusted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hoptrace_sampling_untrusted_ignored_total",
			Help: "Requests from outside the mesh whose sampled flag, B3 debug or hoptrace-sample asked for a trace and were ignored (see --mesh-networks, --trust-external-sampling).",
		}, []string{"namespace", "pod"}),
		discarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hoptrace_upstream_discarded_total",
			Help: "HTTP/1 upstream connections closed instead of reused because the app sent bytes beyond its response (a body on 204/304/HEAD, more than Content-Length); the next client never sees them.",
		}, []string{"namespace", "pod"}),
		silent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hoptrace_splice_idle_closed_total",
			Help: "Relayed connections (not HTTP: TLS, databases, WebSocket and CONNECT tunnels) the agent closed because neither side sent anything for --splice-idle-timeout.",
		}, []string{"namespace", "pod", "direction"}),
		breaches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hoptrace_client_protocol_errors_total",
			Help: "Clients' breaches of HTTP, counted when their connection closes: malformed HTTP/1 requests (answered with 4xx/5xx, connection closed) and HTTP/2 stream and connection errors (RST_STREAM, GOAWAY).",
		}, []string{"namespace", "pod", "direction", "protocol"}),
		attached: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hoptrace_attached_pods",
			Help: "Pods whose traffic is captured now.",
		}),
		attachErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hoptrace_pod_attach_errors_total",
			Help: "Failed attempts to capture a pod (retried on the next reconcile).",
		}),
		detached: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hoptrace_pod_detaches_total",
			Help: "Pods released, by reason (deleted, changed, netns-gone, shutdown).",
		}, []string{"reason"}),
		redirect: newRedirectCollector(),
	}
	m.reg.MustRegister(m.requests, m.legSeconds, m.flows, m.unserved, m.refused, m.untrusted, m.discarded, m.silent, m.breaches, m.attached, m.attachErrors, m.detached, m.redirect,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// redirectCollector reports the BPF programs' capture decisions. Connections
// captured as intended are kernel counters, read at scrape time; bypasses
// arrive as events and are counted here.
type redirectCollector struct {
	decisions, lost *prometheus.Desc
	origFromMap     *prometheus.Desc
	origUnclaimed   *prometheus.Desc
	fastSends       *prometheus.Desc
	fastBytes       *prometheus.Desc

	fastPath func() (redirect.FastPathCounters, bool) // nil or false: fast path off

	mu       sync.Mutex
	counters func() (redirect.Counters, bool) // nil or false until BPF is loaded
	events   map[[2]string]uint64             // direction, reason
}

func newRedirectCollector() *redirectCollector {
	return &redirectCollector{
		decisions: prometheus.NewDesc("hoptrace_redirect_events_total",
			"Capture decisions of the BPF programs, by direction and reason (redirected, captured, no-listener, excluded-port, ...).",
			[]string{"direction", "reason"}, nil),
		lost: prometheus.NewDesc("hoptrace_redirect_events_lost_total",
			"Bypass events the kernel dropped because the agent fell behind reading them.", nil, nil),
		origFromMap: prometheus.NewDesc("hoptrace_redirect_original_dst_from_map_total",
			"Original destinations of outbound connections read from the BPF map instead of the ring, because the ring was full (the agent fell behind accepting); each costs a system call.", nil, nil),
		origUnclaimed: prometheus.NewDesc("hoptrace_redirect_original_dst_unclaimed_total",
			"Original-destination records dropped because the agent never accepted their connection (the pod's listener closed first).", nil, nil),
		fastSends: prometheus.NewDesc("hoptrace_fastpath_sends_total",
			"App sends on in-pod legs seen by the sk_msg fast path, by path: redirected (straight to the agent's socket), or tcp and why (no-peer, sent-over-tcp-before).",
			[]string{"path"}, nil),
		fastBytes: prometheus.NewDesc("hoptrace_fastpath_redirected_bytes_total",
			"Bytes the sk_msg fast path moved straight to the agent's sockets.", nil, nil),
		events: map[[2]string]uint64{},
	}
}

// readFastPath sets where the fast path's counters come from.
func (c *redirectCollector) readFastPath(f func() (redirect.FastPathCounters, bool)) {
	c.mu.Lock()
	c.fastPath = f
	c.mu.Unlock()
}

// readCounters sets where the kernel counters come from.
func (c *redirectCollector) readCounters(f func() (redirect.Counters, bool)) {
	c.mu.Lock()
	c.counters = f
	c.mu.Unlock()
}

// event counts one decision reported as an event.
func (c *redirectCollector) event(direction, reason string) {
	c.mu.Lock()
	c.events[[2]string{direction, reason}]++
	c.mu.Unlock()
}

func (c *redirectCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.decisions
	ch <- c.lost
	ch <- c.origFromMap
	ch <- c.origUnclaimed
	ch <- c.fastSends
	ch <- c.fastBytes
}

func (c *redirectCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counters != nil {
		if n, ok := c.counters(); ok {
			ch <- prometheus.MustNewConstMetric(c.decisions, prometheus.CounterValue, float64(n.Redirected),
				redirect.Outbound.String(), redirect.ReasonRedirected.String())
			ch <- prometheus.MustNewConstMetric(c.decisions, prometheus.CounterValue, float64(n.Captured),
				redirect.Inbound.String(), redirect.ReasonInboundCaptured.String())
			ch <- prometheus.MustNewConstMetric(c.lost, prometheus.CounterValue, float64(n.EventsLost))
			ch <- prometheus.MustNewConstMetric(c.origFromMap, prometheus.CounterValue, float64(n.OrigFromMap))
			ch <- prometheus.MustNewConstMetric(c.origUnclaimed, prometheus.CounterValue, float64(n.OrigUnclaimed))
		}
	}
	for k, n := range c.events {
		ch <- prometheus.MustNewConstMetric(c.decisions, prometheus.CounterValue, float64(n), k[0], k[1])
	}
	if c.fastPath != nil {
		if f, ok := c.fastPath(); ok {
			for path, n := range map[string]uint64{"redirected": f.Redirected, "tcp-no-peer": f.PassNoPeer, "tcp-sent-over-tcp-before": f.PassTCPBefore} {
				ch <- prometheus.MustNewConstMetric(c.fastSends, prometheus.CounterValue, float64(n), path)
			}
			ch <- prometheus.MustNewConstMetric(c.fastBytes, prometheus.CounterValue, float64(f.RedirectedBytes))
		}
	}
}

// handoffCollector reads the local hand-off's counters at scrape time.
type handoffCollector struct {
	stats func() proxy.HandoffStats
	desc  *prometheus.Desc
}

func newHandoffCollector(stats func() proxy.HandoffStats) *handoffCollector {
	return &handoffCollector{stats: stats, desc: prometheus.NewDesc("hoptrace_local_handoffs_total",
		"Connections between two pods of this node, by result: matched (the hop's bytes went through memory), missed (a proxy waited for its peer in vain and used TCP).",
		[]string{"result"}, nil)}
}

func (c *handoffCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *handoffCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(s.Matched), "matched")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(s.Missed), "missed")
}

// exporterCollector reads the exporter's counters at scrape time.
type exporterCollector struct {
	stats                                     func() exporter.Stats
	exported, dropped, retried, failed, queue *prometheus.Desc
}

func newExporterCollector(stats func() exporter.Stats) *exporterCollector {
	return &exporterCollector{
		stats:    stats,
		exported: prometheus.NewDesc("hoptrace_spans_exported_total", "Spans the collector accepted.", nil, nil),
		dropped:  prometheus.NewDesc("hoptrace_spans_dropped_total", "Spans lost, by reason.", []string{"reason"}, nil),
		retried:  prometheus.NewDesc("hoptrace_export_retries_total", "Export attempts retried.", nil, nil),
		failed:   prometheus.NewDesc("hoptrace_export_failed_batches_total", "Batches given up on.", nil, nil),
		queue:    prometheus.NewDesc("hoptrace_export_queue_spans", "Spans waiting to be exported.", nil, nil),
	}
}

func (c *exporterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.exported, c.dropped, c.retried, c.failed, c.queue} {
		ch <- d
	}
}

func (c *exporterCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(c.exported, prometheus.CounterValue, float64(s.Exported))
	for reason, n := range s.Dropped.ByReason() {
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(n), reason)
	}
	ch <- prometheus.MustNewConstMetric(c.retried, prometheus.CounterValue, float64(s.Retries))
	ch <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(s.FailedBatches))
	ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(s.Queued))
}

// podObserver turns one pod's proxy statistics into metrics and flows. Its
// histogram children are resolved once per pod and leg, not per request, and
// only for legs that saw traffic, so idle legs add no series.
type podObserver struct {
	pod       string // namespace/name
	namespace string
	name      string
	m         *metrics
	flows     *flowTable
	legs      [4]func() prometheus.Observer            // by spans.Leg
	counters  [requestSlots]atomic.Pointer[counterRef] // by requestSlot
	flowCount [flowSlots]atomic.Pointer[counterRef]    // by flowSlot
	others    sync.Map                                 // requestKey → prometheus.Counter, for what has no slot
	refused   func() prometheus.Counter                // forced traces refused
	untrusted func() prometheus.Counter                // untrusted sampling headers ignored
	discarded func() prometheus.Counter                // upstreams closed for leftover bytes
}

func newPodObserver(m *metrics, flows *flowTable, namespace, name string) *podObserver {
	o := &podObserver{pod: namespace + "/" + name, namespace: namespace, name: name, m: m, flows: flows}
	for l := range o.legs {
		o.legs[l] = sync.OnceValue(func() prometheus.Observer {
			return m.legSeconds.WithLabelValues(namespace, name, spans.Leg(l).String())
		})
	}
	o.refused = sync.OnceValue(func() prometheus.Counter { return m.refused.WithLabelValues(namespace, name) })
	o.untrusted = sync.OnceValue(func() prometheus.Counter { return m.untrusted.WithLabelValues(namespace, name) })
	o.discarded = sync.OnceValue(func() prometheus.Counter { return m.discarded.WithLabelValues(namespace, name) })
	return o
}

func (o *podObserver) ObserveRequest(s proxy.RequestStats) {
	server, client := s.Legs()
	o.legs[server]().Observe(s.ServerTime.Seconds())
	if s.ClientTime > 0 {
		o.legs[client]().Observe(s.ClientTime.Seconds())
	}
	o.requestCounter(s).Inc()
	switch s.Sampling {
	case spans.OutcomeRefused:
		o.refused().Inc()
	case spans.OutcomeUntrusted:
		o.untrusted().Inc()
	}
	if s.UpstreamDiscarded {
		o.discarded().Inc()
	}
}

// requestKey is what a request counter's labels vary by within one pod.
type requestKey struct {
	dir   proxy.Direction
	proto proxy.Protocol
	class string
}

// counterRef holds a counter child for an atomic.Pointer.
type counterRef struct{ prometheus.Counter }

// The request counters of a pod's usual label sets are found by index: two
// directions, the protocols, and statusClasses. Hashing a label set on every
// request (prometheus' own look-up, or a map keyed by requestKey) was a
// measurable part of the agent's work per request.
const (
	requestProtocols = 8 // proxy.Protocol values below this have a slot
	requestSlots     = 2 * requestProtocols * len(statusClasses)
)

// protocolSlot returns the index of a direction and protocol among the
// 2 × requestProtocols usual ones, or false for one without a slot (a
// protocol the proxy adds later).
func protocolSlot(dir proxy.Direction, proto proxy.Protocol) (int, bool) {
	d := int(dir) - 1
	if d < 0 || d > 1 || int(proto) >= requestProtocols {
		return 0, false
	}
	return d*requestProtocols + int(proto), true
}

// requestSlot returns the index of the request's counter in
// podObserver.counters and its status class (statusClassIndex), or false for a
// label set without a slot: a status of 600 or more (HTTP/1 lets a server send
// one) or a protocol the proxy adds later.
func requestSlot(s proxy.RequestStats) (int, int, bool) {
	class := statusClassIndex(s)
	p, ok := protocolSlot(s.Direction, s.Protocol)
	if class < 0 || !ok {
		return 0, 0, false
	}
	return p*len(statusClasses) + class, class, true
}

// slotCounter returns the counter child held at slot, resolving it with
// child the first time.
func slotCounter(slot *atomic.Pointer[counterRef], child func() prometheus.Counter) prometheus.Counter {
	if c := slot.Load(); c != nil {
		return c.Counter
	}
	c := &counterRef{child()}
	slot.Store(c)
	return c.Counter
}

// requestCounter resolves a request's counter child once per label set, not on
// every request: hashing five label values is the most expensive part of
// counting, and this runs for every request of the pod.
func (o *podObserver) requestCounter(s proxy.RequestStats) prometheus.Counter {
	if slot, class, ok := requestSlot(s); ok {
		return slotCounter(&o.counters[slot], func() prometheus.Counter {
			return o.m.requests.WithLabelValues(o.namespace, o.name, s.Direction.String(), s.Protocol.String(), statusClasses[class])
		})
	}
	k := requestKey{s.Direction, s.Protocol, statusClass(s)}
	if c, ok := o.others.Load(k); ok {
		return c.(prometheus.Counter)
	}
	c := o.m.requests.WithLabelValues(o.namespace, o.name, k.dir.String(), k.proto.String(), k.class)
	o.others.Store(k, c)
	return c
}

// statusClasses are the status_class label's usual values, by
// statusClassIndex: the HTTP classes by their digit, then the three below.
var statusClasses = [...]string{"0xx", "1xx", "2xx", "3xx", "4xx", "5xx", classFailed: "failed", classGRPCError: "grpc-error", classNone: "none"}

const (
	classFailed = 6 + iota
	classGRPCError
	classNone
)

// statusClassIndex is the request's status_class as an index into
// statusClasses, -1 for a status of 600 or more.
func statusClassIndex(s proxy.RequestStats) int {
	switch {
	case s.Failed:
		return classFailed
	case s.GRPCStatus > 0:
		return classGRPCError
	case s.Status == 0:
		return classNone
	case s.Status/100 < classFailed:
		return s.Status / 100
	}
	return -1
}

// statusClass is the request's status_class label: "2xx", "failed", "none"...
func statusClass(s proxy.RequestStats) string {
	if i := statusClassIndex(s); i >= 0 {
		return statusClasses[i]
	}
	return strconv.Itoa(s.Status/100) + "xx"
}

// flowSlots: the flow counters of a pod's usual label sets, two directions by
// the protocols (protocolSlot), found by index as the request counters are.
const flowSlots = 2 * requestProtocols

// flowCounter resolves a flow's counter child once per label set: one is
// counted for every connection, and at thousands of new connections a second
// hashing four label values each time showed in the agent's profile.
func (o *podObserver) flowCounter(s proxy.FlowStats) prometheus.Counter {
	child := func() prometheus.Counter {
		return o.m.flows.WithLabelValues(o.namespace, o.name, s.Direction.String(), s.Protocol.String())
	}
	if slot, ok := protocolSlot(s.Direction, s.Protocol); ok {
		return slotCounter(&o.flowCount[slot], child)
	}
	return child()
}

func (o *podObserver) ObserveFlow(s proxy.FlowStats) {
	o.flowCounter(s).Inc()
	if s.ProtocolErrors > 0 {
		o.m.breaches.WithLabelValues(o.namespace, o.name, s.Direction.String(), s.Protocol.String()).Add(float64(s.ProtocolErrors))
	}
	if s.IdleClosed {
		o.m.silent.WithLabelValues(o.namespace, o.name, s.Direction.String()).Inc()
	}
	o.flows.addStats(o.pod, s)
}

// ObserveRefused counts a connection the proxy closed unserved. Rare: the
// label set is found by prometheus each time.
func (o *podObserver) ObserveRefused(dir proxy.Direction, why proxy.Refusal) {
	o.m.unserved.WithLabelValues(o.namespace, o.name, dir.String(), why.String()).Inc()
}

// forget removes a detached pod's series so /metrics does not grow with churn.
func (o *podObserver) forget() {
	labels := prometheus.Labels{"namespace": o.namespace, "pod": o.name}
	o.m.requests.DeletePartialMatch(labels)
	o.m.legSeconds.DeletePartialMatch(labels)
	o.m.flows.DeletePartialMatch(labels)
	o.m.refused.DeletePartialMatch(labels)
	o.m.unserved.DeletePartialMatch(labels)
	o.m.untrusted.DeletePartialMatch(labels)
	o.m.discarded.DeletePartialMatch(labels)
	o.m.silent.DeletePartialMatch(labels)
	o.m.breaches.DeletePartialMatch(labels)
}

func flowFromStats(pod string, s proxy.FlowStats) Flow {
	f := Flow{
		Pod: pod, Direction: s.Direction.String(), Client: s.Peer.String(), Dst: s.Dst.String(),
		Protocol: s.Protocol.String(), Redirected: true, Open: s.End.IsZero(),
		Start: s.Start, End: s.End, Requests: s.Requests, BytesIn: s.BytesIn, BytesOut: s.BytesOut,
	}
	if s.Requests > 0 {
		server, client := s.Direction.Legs()
		f.LegsMs = map[string]float64{
			server.String(): float64(s.ServerTime.Microseconds()) / 1000 / float64(s.Requests),
			client.String(): float64(s.ClientTime.Microseconds()) / 1000 / float64(s.Requests),
		}
	}
	if s.LastTraceID.IsValid() {
		f.LastTraceID = s.LastTraceID.String()
	}
	return f
}

// inferCollector exposes context inference's outcomes (docs/inference.md):
// nothing while the agent runs without it.
type inferCollector struct {
	stats       func() (infer.Stats, bool)
	requests    *prometheus.Desc
	multiplexed *prometheus.Desc
}

func newInferCollector(stats func() (infer.Stats, bool)) *inferCollector {
	return &inferCollector{
		stats: stats,
		requests: prometheus.NewDesc("hoptrace_infer_requests_total",
			"Outbound HTTP/1 requests without trace context from pods with hoptrace.io/context: infer, by result: linked to the inbound request that caused them, or left unlinked as ambiguous (a thread or process interleaving requests, Go) or for lack of data.",
			[]string{"result"}, nil),
		multiplexed: prometheus.NewDesc("hoptrace_infer_multiplexed_reads_total",
			"Times an app thread read a new inbound request while its last one was unanswered; its process is never linked again.", nil, nil),
	}
}

func (c *inferCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.requests
	ch <- c.multiplexed
}

func (c *inferCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.stats()
	if !ok {
		return
	}
	for _, r := range []struct {
		n    uint64
		name infer.Result
	}{{s.Linked, infer.Linked}, {s.Ambiguous, infer.Ambiguous}, {s.NoData, infer.NoData}} {
		ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(r.n), r.name.String())
	}
	ch <- prometheus.MustNewConstMetric(c.multiplexed, prometheus.CounterValue, float64(s.Multiplexed))
}
