package spans

import "net/http"

// CONTRACT FILE: the signatures below are shared with proxy/ and must not change
// without telling its owner. Implementations are filled in by the spans work.

// Format is a set of trace-context propagation formats.
type Format uint8

const (
	FormatW3C      Format = 1 << iota // traceparent + tracestate
	FormatB3Single                    // b3
	FormatB3Multi                     // X-B3-TraceId, X-B3-SpanId, X-B3-Sampled, X-B3-Flags
)

// OverrideHeader is the per-request sampling override (value 0..1), like Linkerd's
// l5d-sample. The proxy strips it before the app sees it.
const OverrideHeader = "Hoptrace-Sample"

// Context is the trace context a request carries between two spans.
type Context struct {
	TraceID     TraceID
	SpanID      SpanID // the sender's span: the parent of the next span
	Sampled     bool
	Debug       bool   // B3 debug: forces sampling
	Random      bool   // W3C level 2 random trace-id flag
	TraceState  string // W3C tracestate, kept verbatim when valid
	Formats     Format // formats that arrived; Inject writes these back
	B3TraceID64 bool   // the B3 trace id arrived as 64 bits: write it back that way
}

// IsValid reports whether c has a valid trace and span id.
func (c Context) IsValid() bool { return c.TraceID.IsValid() && c.SpanID.IsValid() }

// Extract reads the trace context of a request: W3C first, then b3, then X-B3-*.
// ok is false when no valid context arrived; a malformed header counts as absent
// (the W3C spec says: restart the trace).
func Extract(h http.Header) (c Context, ok bool) {
	panic("spans.Extract: not implemented yet")
}

// Inject removes every trace header from h and writes c in c.Formats (W3C when the
// set is empty), with c.SpanID as the parent span id.
func Inject(h http.Header, c Context) {
	panic("spans.Inject: not implemented yet")
}

// Sampler makes the sampling decision for requests entering the proxy.
type Sampler struct {
	rate float64
}

// NewSampler returns a sampler that starts traces for requests without context at
// rate (0..1) and follows the parent's decision otherwise.
func NewSampler(rate float64) *Sampler { return &Sampler{rate: rate} }

// Decide extracts the request's context, applies the sampling rules (parent-based;
// OverrideHeader and B3 debug force sampling; rate for new traces), removes
// OverrideHeader from h, and returns the context to continue: a new trace id when
// none arrived (SpanID then zero), with Sampled set to the decision.
func (s *Sampler) Decide(h http.Header) Context {
	panic("spans.Sampler.Decide: not implemented yet")
}

// Routes names spans with bounded cardinality: "GET /users/{id}" when a configured
// pattern matches, else just the method. Patterns use net/http ServeMux syntax
// without the method ("/users/{id}", "/static/").
type Routes struct {
	patterns []string
}

// NewRoutes compiles route patterns; it returns an error naming a bad pattern.
func NewRoutes(patterns []string) (*Routes, error) {
	panic("spans.NewRoutes: not implemented yet")
}

// SpanName returns the span name for a request. A nil *Routes names by method only.
func (r *Routes) SpanName(method, path string) string {
	panic("spans.Routes.SpanName: not implemented yet")
}
