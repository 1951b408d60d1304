package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hoptrace/hoptrace/spans"
)

// RequestInfo is what spans, statistics and Config.SkipTrace see of a request,
// whichever protocol carried it. Its strings may point into the request's head:
// whoever keeps one past the call it was given to clones it.
type RequestInfo struct {
	Protocol  Protocol // ProtocolHTTP1, ProtocolHTTP2 or ProtocolGRPC
	Version   string   // network.protocol.version: "1.0", "1.1", "2"
	Method    string
	Path      string // URL path as sent, never the query
	Query     string
	Host      string // Host header or :authority
	UserAgent string
	Peer      netip.AddrPort // the client of this proxy
	Dst       netip.AddrPort // the original destination
	Untrusted bool           // the client is outside the mesh (Config.TrustSampling)
}

// request starts the RequestInfo of a request on fl: what the connection says;
// the protocol's parser fills in the rest.
func (fl *flow) request(proto Protocol, version string) RequestInfo {
	return RequestInfo{Protocol: proto, Version: version, Peer: fl.peer, Dst: fl.dst, Untrusted: fl.untrusted}
}

// tracing is what the legs of a request need of their proxy, fixed when the
// proxy is made: they see nothing else of it.
type tracing struct {
	dir                  Direction
	legServer, legClient spans.Leg
	sampler              *spans.Sampler // nil: no trace headers touched, nothing recorded
	forced               spans.Limiter
	skip                 func(RequestInfo) bool
	recorder             spans.Recorder
	observer             Observer
	routes               *spans.Routes
	resource             *spans.Resource
	queryString          bool
	capture              []capturedHeader // names New checked: tokens, so ASCII keys
}

func newTracing(cfg *Config) tracing {
	t := tracing{
		dir: cfg.Direction, sampler: cfg.Sampler, forced: cfg.ForcedTraces, skip: cfg.SkipTrace,
		recorder: cfg.Recorder, observer: cfg.Observer, routes: cfg.Routes, resource: cfg.Resource,
		queryString: cfg.QueryString, capture: newCapture(cfg.CaptureHeaders),
	}
	t.legServer, t.legClient = cfg.Direction.Legs()
	return t
}

// legs times one request through the proxy, its server leg (facing the client)
// and client leg (facing the upstream), and records their spans when sampled.
// Times are the leg boundaries of docs/proxy.md ("The leg model").
type legs struct {
	t                 *tracing
	info              RequestInfo
	ctx               spans.Context // the decision; SpanID is the incoming parent
	sampled           bool
	outcome           spans.Outcome // what became of the request's own sampling headers
	upstreamDiscarded bool          // the HTTP/1 upstream held bytes beyond the response
	inferred          bool          // the context came from Config.Infer, not the app
	server            spans.SpanID
	client            spans.SpanID

	srvStart   time.Time // request head read
	dialStart  time.Time // first attempt to reach the upstream
	cliStart   time.Time // request head written upstream
	sent       time.Time // request fully written upstream
	firstByte  time.Time // first response byte read from the upstream
	cliEnd     time.Time // response fully read from the upstream
	respHeader time.Time // response head written to the client

	status     int // sent to the client
	grpcStatus int // -1: not gRPC, or none seen
	grpcMsg    string
	failure    string // error.type when the upstream failed or broke off
	failMsg    string
	reqAttrs   []spans.Attr // captured request headers
	resAttrs   []spans.Attr // captured response headers
	urlFull    string       // the client span's url.full, made by detach
	ascii      bool         // detach found every string of the request ASCII (spans.Span.ASCII)
}

// begin starts timing a request whose head was read at now, and makes its
// sampling decision: h loses the override header and, when the request is traced
// (Config.SkipTrace does not exempt it), carries the context to send upstream.
func (t *tracing) begin(l *legs, info RequestInfo, h http.Header, now time.Time) {
	// Field by field: a composite literal that reads *l would be built on
	// the stack first, half a KB on the deepest path of every request.
	reqAttrs, resAttrs := l.reqAttrs[:0], l.resAttrs[:0]
	*l = legs{}
	l.t, l.info, l.srvStart, l.grpcStatus = t, info, now, -1
	l.reqAttrs, l.resAttrs = reqAttrs, resAttrs
	if t.sampler == nil {
		return
	}
	if t.skip != nil && t.skip(info) {
		delete(h, spans.OverrideHeader)
		return
	}
	c, outcome := t.sampler.DecideFor(h, spans.Policy{Untrusted: info.Untrusted, Forced: t.forced})
	l.ctx, l.outcome = c, outcome
	if c.Sampled {
		l.sampled = true
		l.server, l.client = spans.NewSpanID(), spans.NewSpanID()
		l.reqAttrs = t.captureHeaders(l.reqAttrs, h, true)
		spans.Inject(h, c.Child(l.client))
		return
	}
	// Not recorded: the context still travels, so the next hop sees the
	// decision and the trace stays all or nothing, with a fresh parent-id no
	// span has. Trace Context lets a participant either forward traceparent
	// untouched (and then tracestate too, which we may have normalised) or set
	// a new parent-id; a new trace has no parent-id to forward at all.
	spans.Inject(h, c.Child(spans.NewSpanID()))
}

// forget drops the strings of the last request (they point into its head)
// while the connection idles; the attribute slices stay for reuse.
func (l *legs) forget() {
	clear(l.reqAttrs[:cap(l.reqAttrs)])
	clear(l.resAttrs[:cap(l.resAttrs)])
	*l = legs{reqAttrs: l.reqAttrs[:0], resAttrs: l.resAttrs[:0]}
}

// detach gives the strings the spans take from the request and response
// memory of their own, in one allocation. Parsed from an HTTP/1 head they
// point into the whole raw head, and a span waiting in the export queue (for
// minutes, with a collector down) would keep it alive: tens of kilobytes per
// span for requests with large cookies, of which the span uses a few bytes.
func (l *legs) detach() {
	strs := [...]*string{&l.info.Method, &l.info.Path, &l.info.Query, &l.info.Host,
		&l.info.UserAgent, &l.grpcMsg, &l.ctx.TraceState}
	each := func(f func(*string)) {
		for _, s := range strs {
			f(s)
		}
		for i := range l.reqAttrs {
			f(&l.reqAttrs[i].Str)
		}
		for i := range l.resAttrs {
			f(&l.resAttrs[i].Str)
		}
	}
	// url.full (http://host/path?query) goes in the same allocation, before
	// the strings it is made of.
	host := l.info.Host
	if host == "" {
		host = l.info.Dst.String()
	}
	query := l.t.queryString && l.info.Query != ""
	n := len("http://") + len(host) + len(l.info.Path)
	if query {
		n += 1 + len(l.info.Query)
	}
	urlLen := n
	each(func(s *string) { n += len(*s) })
	var b strings.Builder
	b.Grow(n)
	b.WriteString("http://")
	b.WriteString(host)
	b.WriteString(l.info.Path)
	if query {
		b.WriteByte('?')
		b.WriteString(l.info.Query)
	}
	each(func(s *string) { b.WriteString(*s) })
	all := b.String()
	// One pass over all of them, hot from the copy, instead of the exporter
	// checking each string for UTF-8 apart (spans.Span.ASCII).
	l.ascii = spans.IsASCII(all) && spans.IsASCII(l.failure)
	l.urlFull = all[:urlLen]
	off := urlLen
	each(func(s *string) {
		*s = all[off : off+len(*s)]
		off += len(*s)
	})
}

// response notes the response head as received from the upstream.
func (l *legs) response(status int, h http.Header) {
	l.status = status
	if l.sampled && len(l.t.capture) > 0 {
		l.resAttrs = l.t.captureHeaders(l.resAttrs, h, false)
	}
	if l.info.Protocol == ProtocolGRPC {
		l.grpcTrailer(h)
	}
}

// grpcTrailer picks the gRPC status out of trailers (or a trailers-only head).
func (l *legs) grpcTrailer(h http.Header) {
	v := h["Grpc-Status"]
	if len(v) == 0 {
		return
	}
	if n, err := strconv.Atoi(v[0]); err == nil {
		l.grpcStatus = n
	}
	if m := h["Grpc-Message"]; len(m) > 0 {
		l.grpcMsg = m[0]
	}
}

// fail records why the upstream leg failed; kind becomes error.type.
func (l *legs) fail(kind string, err error) {
	if l.failure != "" {
		return
	}
	l.failure = kind
	if err != nil {
		l.failMsg = err.Error()
	}
}

// finish ends both legs: the response was fully written to the client at end.
func (l *legs) finish(end time.Time, fl *flow) {
	t := l.t
	srv := end.Sub(l.srvStart)
	var cli time.Duration
	if !l.cliStart.IsZero() && !l.cliEnd.IsZero() {
		cli = l.cliEnd.Sub(l.cliStart)
	}
	fl.requests.Add(1)
	fl.srvNanos.Add(int64(srv))
	fl.cliNanos.Add(int64(cli))
	if l.sampled {
		fl.trace.store(l.ctx.TraceID)
		if t.recorder != nil {
			l.detach()
			rec := newLegSpans(l, end, fl)
			t.recorder.Record(&rec.server)
			t.recorder.Record(&rec.client)
		}
	}
	if t.observer != nil {
		st := RequestStats{
			Direction:  t.dir,
			Protocol:   l.info.Protocol,
			Peer:       l.info.Peer,
			Dst:        l.info.Dst,
			Method:     statsMethod(l.info.Method),
			Status:     l.status,
			GRPCStatus: l.grpcStatus,
			ServerTime: srv,
			ClientTime: cli,
			Failed:     l.failure != "",
			Sampling:   l.outcome,

			UpstreamDiscarded: l.upstreamDiscarded,
		}
		if l.sampled {
			st.TraceID = l.ctx.TraceID
		}
		t.observer.ObserveRequest(st)
	}
}

// statsMethod is the method for RequestStats, in memory of its own: observers
// keep statistics (by method, say) long after the request's head is gone.
func statsMethod(m string) string {
	if known, ok := otelMethod(m); ok {
		return known
	}
	return strings.Clone(m)
}

func (l *legs) spanName() string {
	if l.info.Protocol == ProtocolGRPC {
		if _, _, ok := grpcMethod(l.info.Path); ok {
			return l.info.Path[1:] // service/method, without making it anew
		}
	}
	return l.t.routes.SpanName(l.info.Method, l.info.Path)
}

// legSpans is a sampled request's two spans, deferred (spans.Builder): what
// the legs knew when the request ended, copied, from which the exporter
// builds each span just before encoding it. Recycled: the exporter releases
// each span once it has encoded it (spans.Release), and when both are back
// the object is reused. Allocating, clearing and collecting a few KB per
// traced request was most of what recording it cost, and building the
// spans' attributes here, to be read by the exporter on another CPU, most of
// what was left (spans.Builder says why). A burst of traced requests fills
// the export queue with these objects, and their size is what tracing adds
// to the agent's peak memory.
type legSpans struct {
	server, client spans.Span // deferred: the resource, the builder and the recycler
	l              legs       // a copy, its strings detached
	end            time.Time  // the server leg's end
	name, host     string
	port           uint16
	peer, dst      string // the flow's addresses as strings
	capture        []spans.Attr
	out            atomic.Int32 // spans not released yet
}

var legSpansPool = sync.Pool{New: func() any { return new(legSpans) }}

// newLegSpans records l, which ended at end, for its two spans. l's strings
// must be detached: the copy outlives the request.
func newLegSpans(l *legs, end time.Time, fl *flow) *legSpans {
	r := legSpansPool.Get().(*legSpans)
	r.out.Store(2)
	// The captured headers' attributes live in slices the connection reuses
	// for its next request: the record keeps copies.
	capture := append(append(r.capture[:0], l.reqAttrs...), l.resAttrs...)
	r.l = *l
	r.capture = capture
	r.l.reqAttrs = capture[:len(l.reqAttrs):len(l.reqAttrs)]
	r.l.resAttrs = capture[len(l.reqAttrs):]
	r.end = end
	r.name = l.spanName()
	r.host, r.port = l.serverAddress()
	r.l.ascii = l.ascii && spans.IsASCII(r.host) // without Host, the destination, which may carry a zone
	if l.info.Peer.IsValid() {
		r.peer = fl.peerAddr()
		r.l.ascii = r.l.ascii && spans.IsASCII(r.peer) // an IPv6 zone is an interface name
	}
	if l.info.Dst.IsValid() {
		r.dst = fl.dstAddr()
		r.l.ascii = r.l.ascii && spans.IsASCII(r.dst)
	}
	for _, s := range [...]*spans.Span{&r.server, &r.client} {
		s.Resource = l.t.resource
		s.SetBuilder(r)
		s.SetRecycler(r)
	}
	return r
}

// Build builds the server or the client span into s.
func (r *legSpans) Build(which, s *spans.Span) {
	if which == &r.server {
		r.l.serverSpan(s, r.name, r.host, r.port, r.end, r.peer)
	} else {
		r.l.clientSpan(s, r.name, r.host, r.port, r.end, r.dst)
	}
}

// Recycle takes back one of the two spans; the second one back returns the
// record to the pool, cleared of every reference.
func (r *legSpans) Recycle(*spans.Span) {
	if r.out.Add(-1) != 0 {
		return
	}
	clear(r.capture)
	*r = legSpans{capture: r.capture[:0]}
	legSpansPool.Put(r)
}

// serverSpan builds the server leg into s (spans.Build's into); peer is the
// client's address as a string.
func (l *legs) serverSpan(s *spans.Span, name, host string, port uint16, end time.Time, peer string) {
	l.spanHead(s, name)
	s.SpanID, s.ParentID = l.server, l.ctx.SpanID
	s.Kind = l.t.legServer.Kind()
	s.Start, s.End = l.srvStart, end
	a := s.Attrs
	a = appendString(a, "hoptrace.leg", l.t.legServer.String())
	a = l.common(a, host, port)
	a = appendString(a, "url.scheme", "http")
	// Recommended on server spans, opt-in on client spans (HTTP semantic
	// conventions): the client legs of the same request leave it out.
	if l.info.UserAgent != "" {
		a = appendString(a, "user_agent.original", l.info.UserAgent)
	}
	if l.info.Path != "" {
		a = appendString(a, "url.path", l.info.Path)
	}
	if l.t.queryString && l.info.Query != "" {
		a = appendString(a, "url.query", l.info.Query)
	}
	s.ASCII = l.ascii
	if l.info.Peer.IsValid() {
		a = appendString(a, "client.address", peer)
		a = appendString(a, "network.peer.address", peer)
		a = appendInt(a, "network.peer.port", int64(l.info.Peer.Port()))
	}
	a = append(a, l.reqAttrs...)
	a = append(a, l.resAttrs...)
	s.Attrs = a
	// The span's start and end are when the head was read and the response
	// fully written: only the moment in between is an event.
	s.Events = appendEvent(s.Events[:0], "response.first_byte", l.respHeader)
	switch {
	case l.grpcStatus > 0:
		s.Status, s.StatusMessage = spans.StatusError, l.grpcMsg
	case l.status >= 500 || l.status == 0:
		s.Status, s.StatusMessage = spans.StatusError, l.failMsg
	}
}

// spanHead sets what both spans of a request share. The span builders set
// fields one by one: a composite literal of a Span or appending several
// attributes at once builds them on the stack first, for nothing.
func (l *legs) spanHead(s *spans.Span, name string) {
	s.TraceID = l.ctx.TraceID
	s.TraceState = l.ctx.TraceState
	s.Flags = l.ctx.Flags()
	s.Name = name
	s.Resource = l.t.resource
}

// clientSpan is the client leg; srvEnd is the server leg's end, which it never
// outlasts: a leg that broke off before the response ended (a reset, a vanished
// upstream) ends with the request.
func (l *legs) clientSpan(s *spans.Span, name, host string, port uint16, srvEnd time.Time, dst string) {
	start := l.cliStart
	if start.IsZero() {
		start = l.dialStart // it never got as far as writing
	}
	end := l.cliEnd
	if end.IsZero() || end.After(srvEnd) {
		end = srvEnd
	}
	l.spanHead(s, name)
	s.SpanID, s.ParentID = l.client, l.server
	s.Kind = l.t.legClient.Kind()
	s.Start, s.End = start, end
	a := s.Attrs
	a = appendString(a, "hoptrace.leg", l.t.legClient.String())
	a = l.common(a, host, port)
	a = appendString(a, "url.full", l.urlFull)
	s.ASCII = l.ascii
	if l.info.Dst.IsValid() {
		a = appendString(a, "network.peer.address", dst)
		a = appendInt(a, "network.peer.port", int64(l.info.Dst.Port()))
	}
	a = append(a, l.reqAttrs...)
	a = append(a, l.resAttrs...)
	s.Attrs = a
	// The span ends when the response was fully read (or with the server
	// leg): no event for that.
	s.Events = appendEvent(appendEvent(s.Events[:0], "wire.send", l.sent), "response.first_byte", l.firstByte)
	switch {
	case l.failure != "":
		s.Status, s.StatusMessage = spans.StatusError, l.failMsg
	case l.grpcStatus > 0:
		s.Status, s.StatusMessage = spans.StatusError, l.grpcMsg
	case l.status >= 400:
		// OpenTelemetry: a client span errs on 4xx too, a server span only on 5xx.
		s.Status = spans.StatusError
	}
}

// common appends the attributes both legs carry; host and port are
// serverAddress's.
func (l *legs) common(a []spans.Attr, host string, port uint16) []spans.Attr {
	method := l.info.Method
	if known, ok := otelMethod(method); ok {
		a = appendString(a, "http.request.method", known)
	} else {
		a = appendString(a, "http.request.method", "_OTHER")
		a = appendString(a, "http.request.method_original", method)
	}
	a = appendString(a, "server.address", host)
	a = appendInt(a, "server.port", int64(port))
	// No network.protocol.name: the HTTP conventions want it only when it is
	// not "http", and every request here is HTTP (gRPC included). Instrumented
	// apps leave it out too, and it was 6 % of each span's bytes.
	a = appendString(a, "network.protocol.version", l.info.Version)
	if l.inferred {
		a = appendAttr(a, "hoptrace.context.inferred")
		a[len(a)-1].Type, a[len(a)-1].Bool = spans.AttrBool, true
	}
	if l.status > 0 {
		a = appendInt(a, "http.response.status_code", int64(l.status))
	}
	if l.info.Protocol == ProtocolGRPC {
		a = appendString(a, "rpc.system", "grpc")
		if svc, m, ok := grpcMethod(l.info.Path); ok {
			a = appendString(a, "rpc.service", svc)
			a = appendString(a, "rpc.method", m)
		}
		if l.grpcStatus >= 0 {
			a = appendInt(a, "rpc.grpc.status_code", int64(l.grpcStatus))
		}
	}
	switch {
	case l.failure != "":
		a = appendString(a, "error.type", l.failure)
	case l.status >= 500:
		a = appendString(a, "error.type", strconv.Itoa(l.status))
	}
	return a
}

// appendAttr appends an attribute with key k and no value yet, in place:
// append(a, spans.String(k, v)) would build the 56-byte value on the stack
// first, once per call site. Not inlined, for the same reason: each inlined
// copy's growth path would add its own temporaries to the caller's frame.
//
//go:noinline
func appendAttr(a []spans.Attr, k string) []spans.Attr {
	if len(a) == cap(a) {
		a = append(a, spans.Attr{})
	} else {
		a = a[:len(a)+1]
		a[len(a)-1] = spans.Attr{}
	}
	a[len(a)-1].Key = k
	return a
}

func appendString(a []spans.Attr, k, v string) []spans.Attr {
	a = appendAttr(a, k)
	a[len(a)-1].Str = v // Type: AttrString is the zero value
	return a
}

func appendInt(a []spans.Attr, k string, v int64) []spans.Attr {
	a = appendAttr(a, k)
	a[len(a)-1].Type, a[len(a)-1].Int = spans.AttrInt, v
	return a
}

// serverAddress is the logical server the client addressed: the Host header,
// with the original destination's port when the header has none.
func (l *legs) serverAddress() (string, uint16) {
	h := l.info.Host
	if h == "" {
		return l.info.Dst.Addr().String(), l.info.Dst.Port()
	}
	if host, port, err := net.SplitHostPort(h); err == nil {
		if n, err := strconv.ParseUint(port, 10, 16); err == nil {
			return host, uint16(n)
		}
		return host, l.info.Dst.Port()
	}
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), l.info.Dst.Port()
}

// appendEvent appends an event at t, unless t was never reached.
//
//go:noinline
func appendEvent(dst []spans.Event, name string, t time.Time) []spans.Event {
	if t.IsZero() {
		return dst
	}
	if len(dst) == cap(dst) {
		return append(dst, spans.Event{Name: name, Time: t})
	}
	dst = dst[:len(dst)+1]
	e := &dst[len(dst)-1]
	e.Name, e.Time, e.Attrs = name, t, nil
	return dst
}

// otelMethod returns the method as the HTTP conventions name it, or false for a
// method outside RFC 9110 and PATCH ("_OTHER").
func otelMethod(m string) (string, bool) {
	// The constants, not m: m points into the request's head, and what keeps it
	// (a span, the observer's statistics) would keep the whole head.
	switch m {
	case http.MethodGet:
		return http.MethodGet, true
	case http.MethodHead:
		return http.MethodHead, true
	case http.MethodPost:
		return http.MethodPost, true
	case http.MethodPut:
		return http.MethodPut, true
	case http.MethodDelete:
		return http.MethodDelete, true
	case http.MethodConnect:
		return http.MethodConnect, true
	case http.MethodOptions:
		return http.MethodOptions, true
	case http.MethodTrace:
		return http.MethodTrace, true
	case http.MethodPatch:
		return http.MethodPatch, true
	}
	return "", false
}

// capturedHeader is a header the configuration asks to record.
type capturedHeader struct {
	key      string // canonical
	field    string // as an HTTP/2 field name (lower case)
	reqAttr  string // http.request.header.<lower-case name>
	respAttr string // http.response.header.<lower-case name>
}

func newCapture(names []string) []capturedHeader {
	var out []capturedHeader
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		lower := strings.ToLower(n)
		out = append(out, capturedHeader{
			key:      http.CanonicalHeaderKey(n),
			field:    lower,
			reqAttr:  "http.request.header." + lower,
			respAttr: "http.response.header." + lower,
		})
	}
	return out
}

// isCaptured reports whether key (canonical) is a captured header.
func isCaptured(capture []capturedHeader, key string) bool {
	for i := range capture {
		if capture[i].key == key {
			return true
		}
	}
	return false
}

func (t *tracing) captureHeaders(dst []spans.Attr, h http.Header, request bool) []spans.Attr {
	for _, c := range t.capture {
		vv := h[c.key]
		if len(vv) == 0 {
			continue
		}
		k := c.respAttr
		if request {
			k = c.reqAttr
		}
		dst = append(dst, spans.String(k, strings.Join(vv, ",")))
	}
	return dst
}
