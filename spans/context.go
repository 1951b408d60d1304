package spans

import "net/http"

// CONTRACT FILE: the signatures below are shared with proxy/ and must not change
// without telling its owner. Implementations live next to their format: w3c.go,
// b3.go, sample.go, routes.go.

// Format is a set of trace-context propagation formats.
type Format uint8

const (
	FormatW3C      Format = 1 << iota // traceparent + tracestate
	FormatB3Single                    // b3
	FormatB3Multi                     // X-B3-TraceId, X-B3-SpanId, X-B3-Sampled, X-B3-Flags

	allFormats = FormatW3C | FormatB3Single | FormatB3Multi
)

// OverrideHeader is the per-request sampling override (value 0..1), like Linkerd's
// l5d-sample. The proxy strips it before the app sees it.
const OverrideHeader = "Hoptrace-Sample"

// W3C trace-flags bits (Trace Context Level 2). Other bits are reserved: the spec
// says to send them as zero, so they are never kept.
const (
	FlagSampled uint8 = 0x01
	FlagRandom  uint8 = 0x02 // at least the right-most 7 bytes of the trace id are random
)

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

	// Deferred is set when B3 ids arrived without a sampling state: B3 then asks
	// the receiver to decide. Sampled is false and means nothing while Deferred is
	// set; Sampler.Decide always decides and clears it. The zero value means
	// "decided", so Context literals keep their meaning.
	Deferred bool
}

// IsValid reports whether c has a valid trace and span id.
func (c Context) IsValid() bool { return c.TraceID.IsValid() && c.SpanID.IsValid() }

// Child returns the context a span with the given id sends downstream: the same
// trace, decision and tracestate, with id as the parent.
func (c Context) Child(id SpanID) Context {
	c.SpanID = id
	return c
}

// Flags returns the W3C trace-flags byte of c (FlagSampled, FlagRandom), as
// Span.Flags and OTLP expect it.
func (c Context) Flags() uint8 {
	var f uint8
	if c.Sampled || c.Debug {
		f |= FlagSampled
	}
	if c.Random {
		f |= FlagRandom
	}
	return f
}

// Canonical http.Header keys of every trace header Extract reads and Inject
// writes. Lookups use them directly: http.Header keys are canonical, and this
// avoids re-canonicalising on the data path.
const (
	HeaderTraceparent = "Traceparent"
	HeaderTracestate  = "Tracestate"
	HeaderB3          = "B3"
	HeaderB3TraceID   = "X-B3-Traceid"
	HeaderB3SpanID    = "X-B3-Spanid"
	HeaderB3ParentID  = "X-B3-Parentspanid"
	HeaderB3Sampled   = "X-B3-Sampled"
	HeaderB3Flags     = "X-B3-Flags"
)

var traceHeaders = [...]string{
	HeaderTraceparent, HeaderTracestate, HeaderB3,
	HeaderB3TraceID, HeaderB3SpanID, HeaderB3ParentID, HeaderB3Sampled, HeaderB3Flags,
}

// TraceHeaders returns the keys of every trace header, W3C first: the ones a
// proxy must carry as Inject left them, never as received.
func TraceHeaders() [len(traceHeaders)]string { return traceHeaders }

// IsTraceHeader reports whether key (canonical) is one of TraceHeaders.
func IsTraceHeader(key string) bool {
	for _, k := range traceHeaders {
		if k == key {
			return true
		}
	}
	return false
}

// Extract reads the trace context of a request: W3C first, then b3, then X-B3-*.
// ok is false when no valid context arrived; a malformed header counts as absent
// (the W3C spec says: restart the trace).
//
// In detail:
//   - The first format, in that order, that carries a trace and span id wins and
//     ok is true. An invalid traceparent also drops tracestate; an invalid
//     tracestate is dropped on its own. A valid tracestate is returned verbatim
//     when it arrived as one field without empty members or optional whitespace,
//     else its members are joined with "," (multiple fields are combined).
//   - If none carries ids but a B3 header carries a bare sampling decision
//     (b3: 0/1/d, X-B3-Sampled or X-B3-Flags alone), ok is false and c holds that
//     decision (Sampled, Debug) with Formats set: the decision must still be
//     propagated. Sampler.Decide starts a trace for it.
//   - Formats is the set of every format whose headers were well-formed, even
//     those that lost on priority, so Inject answers in every format the sender
//     used. It is empty when nothing usable arrived.
//   - B3 ids without a sampling state set Deferred (see Context).
//
// h must have canonical keys, as the headers net/http parses do: that is how
// header names are matched in any case, as the W3C spec requires.
func Extract(h http.Header) (c Context, ok bool) {
	var decision Context // first bare decision, used when no format carries ids
	haveDecision := false

	if w, err := extractW3C(h); err == nil {
		c, ok = w, true
		c.Formats |= FormatW3C
	}
	if b, err := parseB3Single(h[HeaderB3]); err == nil {
		c.Formats |= FormatB3Single
		switch {
		case ok:
		case b.TraceID.IsValid():
			c, ok = b.withFormats(c.Formats), true
		default:
			decision, haveDecision = b, true
		}
	}
	if b, err := parseB3Multi(h); err == nil {
		c.Formats |= FormatB3Multi
		switch {
		case ok:
		case b.TraceID.IsValid():
			c, ok = b.withFormats(c.Formats), true
		case !haveDecision:
			decision, haveDecision = b, true
		}
	}
	if !ok && haveDecision {
		c = decision.withFormats(c.Formats)
	}
	return c, ok
}

func (c Context) withFormats(f Format) Context {
	c.Formats = f
	return c
}

// Inject removes every trace header from h and writes c in c.Formats (W3C when the
// set is empty), with c.SpanID as the parent span id.
//
// Ids are written only when c.IsValid(); the proxy sets its own span id with
// Child first. Without ids, B3 formats still carry c's bare sampling decision
// (b3: 0/1/d, X-B3-Sampled, X-B3-Flags) and W3C writes nothing, since a
// traceparent cannot exist without ids. Debug is written as B3 debug; a Deferred
// context is written without a B3 sampling state. The W3C version written is 00
// with only the sampled and random flags, as the spec asks of a downgrade.
func Inject(h http.Header, c Context) {
	// One pass over h when it is small, instead of hashing every trace
	// header's name to delete it: a proxy's header view holds a few fields.
	if len(h) <= len(traceHeaders) {
		for k := range h {
			if IsTraceHeader(k) {
				delete(h, k)
			}
		}
	} else {
		for _, k := range traceHeaders {
			delete(h, k)
		}
	}
	f := c.Formats & allFormats
	if f == 0 {
		f = FormatW3C
	}
	if f&FormatW3C != 0 && c.IsValid() {
		h[HeaderTraceparent] = []string{formatTraceparent(c)}
		if c.TraceState != "" {
			h[HeaderTracestate] = []string{c.TraceState}
		}
	}
	if f&FormatB3Single != 0 {
		injectB3Single(h, c)
	}
	if f&FormatB3Multi != 0 {
		injectB3Multi(h, c)
	}
}

// Sampler makes the sampling decision for requests entering the proxy. It is
// immutable and safe for concurrent use.
type Sampler struct {
	rate      float64
	threshold uint64 // see traceIDBelow
}

// NewSampler returns a sampler that starts traces for requests without context at
// rate (0..1) and follows the parent's decision otherwise. A rate outside 0..1 is
// clamped; NaN counts as 0.
func NewSampler(rate float64) *Sampler {
	return &Sampler{rate: clampRate(rate), threshold: thresholdFor(rate)}
}

// Decide extracts the request's context, applies the sampling rules (parent-based;
// OverrideHeader and B3 debug force sampling; rate for new traces), removes
// OverrideHeader from h, and returns the context to continue: a new trace id when
// none arrived (SpanID then zero), with Sampled set to the decision. It is
// DecideFor with the zero Policy: the sender is trusted and forcing is unlimited.
//
// The decision, in order:
//  1. B3 debug (b3: d, X-B3-Flags: 1) samples.
//  2. OverrideHeader with a value p in [0, 1] (its first field, parsed as a float)
//     samples the request with probability p. It can only add to rules 3 and 4,
//     never suppress a trace they sample. A malformed or out-of-range value is
//     ignored; the header is removed either way.
//  3. A decision that arrived (W3C sampled flag, B3 sampling state, with or without
//     ids) is followed.
//  4. Otherwise, for no context or B3 ids with a deferred decision, the sampler's
//     rate applies.
//
// Probabilities are applied to the trace id, as OpenTelemetry's TraceIDRatioBased
// does: sampled when the last 8 bytes of the trace id, read big-endian and shifted
// right by one bit, are below p·2^63. Every hop applying the same rate to the same
// trace thus agrees, and a rate of 1 samples everything.
//
// When no ids arrived, the returned context has a new random trace id, Random set,
// SpanID zero and no TraceState; Formats keeps the format a bare B3 decision came
// in (else it is empty, which Inject writes as W3C). Deferred is always false and
// Debug implies Sampled. A nil *Sampler has rate 0.
func (s *Sampler) Decide(h http.Header) Context {
	c, _ := s.decide(h, Policy{})
	return c
}

// Policy says how far DecideFor believes a request's own sampling signals: the
// decision that arrived (W3C sampled flag, B3 sampling state), B3 debug and
// OverrideHeader. The zero Policy believes them all and forces without limit.
type Policy struct {
	// Untrusted: the sender is outside the mesh, and anyone could have written
	// its headers. Its ids are kept, so its trace still links, but its
	// decision, debug flag and override are ignored: the rate decides, as for a
	// request that carried no decision, and Debug is cleared.
	Untrusted bool
	// Forced rations forced traces: those OverrideHeader or a bare B3 debug
	// (one without ids, which starts a trace) would sample where rules 3 and 4
	// of Decide would not. A refused one gets the decision of rules 3 and 4
	// (a bare debug has none underneath: the rate) and loses Debug. B3 debug
	// with ids continues a trace whose sender already forced it: it is followed
	// like a sampled flag and never charged, so a trace stays whole across hops.
	// nil: unlimited.
	Forced Limiter
}

// Limiter rations forced traces: Allow reports whether one more may start now.
type Limiter interface{ Allow() bool }

// Outcome says what DecideFor did with a request's own sampling signals, so
// that the caller can count it.
type Outcome uint8

const (
	OutcomeNone      Outcome = iota // nothing was forced or ignored
	OutcomeForced                   // a forced trace started (the limiter allowed it)
	OutcomeRefused                  // a forced trace was refused by the limiter
	OutcomeUntrusted                // an untrusted sender asked for a trace (sampled flag, debug, override > 0) and was ignored
)

// DecideFor is Decide under a policy, and also reports what became of the
// request's own sampling signals.
func (s *Sampler) DecideFor(h http.Header, p Policy) (Context, Outcome) {
	return s.decide(h, p)
}

// Routes names spans with bounded cardinality: "GET /users/{id}" when a configured
// pattern matches, else just the method. Patterns use net/http ServeMux syntax
// without the method ("/users/{id}", "/static/").
type Routes struct {
	mux   *http.ServeMux
	names map[string]*routeNames // by pattern
}

// NewRoutes compiles route patterns; it returns an error naming a bad pattern.
// Errors wrap ErrInvalidRoute. Patterns must start with "/" (no method, no host);
// overlapping patterns that ServeMux would reject as conflicting are errors too.
func NewRoutes(patterns []string) (*Routes, error) {
	return newRoutes(patterns)
}

// SpanName returns the span name for a request. A nil *Routes names by method only.
//
// path is the request's URL path (r.URL.Path). The pattern is the one
// net/http.ServeMux would pick for it (most specific wins, after ServeMux's path
// cleaning). Methods outside RFC 9110's set plus PATCH are named "HTTP", as the
// OpenTelemetry HTTP conventions ask. The raw path never appears in a name.
func (r *Routes) SpanName(method, path string) string {
	return r.spanName(method, path)
}
