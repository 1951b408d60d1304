// Package spans holds hoptrace's trace context (W3C Trace Context, B3), the sampling
// decision and the span records the proxy produces and the exporter ships.
//
// Span records are plain structs, not OpenTelemetry SDK spans: their ids and
// timestamps come from the wire and from the proxy's own clock readings, so they are
// built directly and converted to OTLP by the exporter (as Beyla does).
package spans

import (
	"encoding/hex"
	"math/rand/v2"
	"time"
)

// TraceID is a 16-byte W3C/B3 trace id. The zero value is invalid.
type TraceID [16]byte

// SpanID is an 8-byte span id. The zero value is invalid.
type SpanID [8]byte

// IsValid reports whether the id is not all zeroes, as the W3C spec requires.
func (t TraceID) IsValid() bool { return t != TraceID{} }

// IsValid reports whether the id is not all zeroes.
func (s SpanID) IsValid() bool { return s != SpanID{} }

func (t TraceID) String() string { return hex.EncodeToString(t[:]) }
func (s SpanID) String() string  { return hex.EncodeToString(s[:]) }

// NewTraceID returns a random, valid trace id. All 16 bytes are random, so ids
// we start qualify for the W3C level 2 "random" flag.
func NewTraceID() TraceID {
	var t TraceID
	for !t.IsValid() {
		putUint64(t[:8], rand.Uint64())
		putUint64(t[8:], rand.Uint64())
	}
	return t
}

// NewSpanID returns a random, valid span id.
func NewSpanID() SpanID {
	var s SpanID
	for !s.IsValid() {
		putUint64(s[:], rand.Uint64())
	}
	return s
}

func putUint64(b []byte, v uint64) {
	_ = b[7]
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

// Leg is one of the four timed legs of a hop through the proxy.
type Leg uint8

const (
	// OutboundServer: the proxy serving app A's request in A's netns.
	OutboundServer Leg = iota
	// OutboundClient: the proxy's request towards B, made from A's netns.
	OutboundClient
	// InboundServer: the proxy serving the request that arrived for B.
	InboundServer
	// InboundClient: the proxy's request to app B over loopback.
	InboundClient
)

var legNames = [...]string{"outbound-server", "outbound-client", "inbound-server", "inbound-client"}

// String returns the leg's name as it appears in the hoptrace.leg attribute.
func (l Leg) String() string {
	if int(l) < len(legNames) {
		return legNames[l]
	}
	return "unknown"
}

// Kind is the span kind the leg is reported with.
func (l Leg) Kind() Kind {
	if l == OutboundServer || l == InboundServer {
		return KindServer
	}
	return KindClient
}

// Kind is an OpenTelemetry span kind.
type Kind uint8

const (
	KindUnspecified Kind = iota
	KindInternal
	KindServer
	KindClient
)

// Status is an OpenTelemetry span status code.
type Status uint8

const (
	StatusUnset Status = iota
	StatusOK
	StatusError
)

// AttrType tells which field of an Attr holds its value.
type AttrType uint8

const (
	AttrString AttrType = iota
	AttrInt
	AttrBool
	AttrFloat
)

// Attr is a span, event or resource attribute. Build one with String, Int, Bool or Float.
// The two one-byte fields come last, sharing one word: 56 bytes instead of 64,
// and a traced request's records hold dozens of attributes.
type Attr struct {
	Key   string
	Str   string
	Int   int64
	Float float64
	Type  AttrType
	Bool  bool
}

func String(key, v string) Attr        { return Attr{Key: key, Type: AttrString, Str: v} }
func Int(key string, v int64) Attr     { return Attr{Key: key, Type: AttrInt, Int: v} }
func Bool(key string, v bool) Attr     { return Attr{Key: key, Type: AttrBool, Bool: v} }
func Float(key string, v float64) Attr { return Attr{Key: key, Type: AttrFloat, Float: v} }

// Event is a timestamped point inside a span.
type Event struct {
	Name  string
	Time  time.Time
	Attrs []Attr
}

// Resource describes what produced a span: one per pod. Resources are immutable once
// built and shared by pointer, so the exporter can group spans by pointer identity.
type Resource struct {
	Attrs []Attr // service.name, k8s.pod.name, k8s.namespace.name, k8s.node.name, k8s.pod.uid, ...
}

// ServiceName returns the resource's service.name, or "" if it has none.
func (r *Resource) ServiceName() string {
	if r == nil {
		return ""
	}
	for _, a := range r.Attrs {
		if a.Key == "service.name" {
			return a.Str
		}
	}
	return ""
}

// Span is one finished span record.
type Span struct {
	TraceID    TraceID
	SpanID     SpanID
	ParentID   SpanID // zero for a root span
	TraceState string // W3C tracestate, exported as-is
	Flags      uint8  // W3C trace flags (bit 0 sampled, bit 1 random)

	Name  string
	Kind  Kind
	Start time.Time
	End   time.Time

	Attrs         []Attr
	Events        []Event
	Status        Status
	StatusMessage string

	Resource *Resource

	// ASCII promises that every string of Attrs and Events, keys and values,
	// is ASCII, so the exporter need not check them for UTF-8 one by one. Only
	// a maker that has checked them all sets it (the proxy checks a request's
	// strings in one pass); when in doubt, leave it false.
	ASCII bool

	recycler Recycler // takes the span back on Release; nil: the collector does
	builder  Builder  // makes the rest of the span on Build; nil: it is all here
}

// Recorder receives finished spans. Implementations must not block: the proxy calls
// Record on its data path. The exporter is the production Recorder. A Recorder
// that is done with a span for good (the exporter, once it has encoded it) may
// call Release; one that keeps spans must not. A recorded span may be
// deferred (SetBuilder): a Recorder reads it through Build, before Release.
type Recorder interface {
	Record(*Span)
}

// Builder makes a deferred span's content (SetBuilder) when its consumer
// needs it rather than when the span ends.
//
// Why: the proxy ends a request's spans on the request's goroutine and the
// exporter encodes them on its own, on another CPU. Built where they end,
// the spans' attributes (a few KB per request) are written on one CPU and
// read on the other, and that traffic between caches was most of what
// building and encoding them cost the agent. Deferred, the maker keeps a
// compact record of what it knows (timings, the request's strings), and the
// exporter builds each span into one scratch span of its own, hot in its
// cache, just before encoding it.
type Builder interface {
	// Build fills into with s's content: every field but the recycler.
	// into's Attrs and Events come empty with room to reuse (append to them).
	Build(s, into *Span)
}

// SetBuilder defers s: until Build, s holds only its Resource (which a
// consumer may read to group spans), and b makes the rest.
func (s *Span) SetBuilder(b Builder) { s.builder = b }

// Build returns s ready to read: s itself, or, for a deferred span, into
// filled with it by its builder. into's Attrs and Events are reused; what
// Build returns is valid until into is built into again or s is released.
func Build(s, into *Span) *Span {
	if s.builder == nil {
		return s
	}
	attrs, events := into.Attrs[:0], into.Events[:0]
	*into = Span{Attrs: attrs, Events: events}
	s.builder.Build(s, into)
	return into
}

// Recycler reuses the memory of spans it made (SetRecycler) once they are
// released: on a busy node, allocating every span's record anew is most of
// what tracing a request costs.
type Recycler interface {
	Recycle(*Span)
}

// SetRecycler makes r take s back when s is released.
func (s *Span) SetRecycler(r Recycler) { s.recycler = r }

// Release hands s back to its maker, if that recycles spans. Only a span's last
// consumer may release it (a Recorder that fans spans out to others must not),
// and nothing may read s, or its attributes and events, afterwards.
func Release(s *Span) {
	if r := s.recycler; r != nil {
		r.Recycle(s)
	}
}

// IsASCII reports whether s has no byte above 0x7f, eight at a time: what a
// span's maker checks before it sets Span.ASCII.
func IsASCII(s string) bool {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if w&0x8080808080808080 != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// RecorderFunc adapts a function to Recorder (tests, fan-out).
type RecorderFunc func(*Span)

func (f RecorderFunc) Record(s *Span) { f(s) }
