package exporter

import (
	"math"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/hoptrace/hoptrace/spans"
)

// encoder writes an OTLP ExportTraceServiceRequest in protobuf wire format
// straight from span records. Building go.opentelemetry.io/proto/otlp messages and
// marshalling them cost three quarters of the exporter's CPU (reflection-driven
// sizing and encoding of ~40 small messages per span); this does the same in one
// sizing pass and one append pass, without allocating. ToResourceSpans is the
// reference it is tested against (encode_test.go decodes both and compares).
//
// Field numbers are those of opentelemetry/proto/collector/trace/v1 and
// trace/v1, common/v1, resource/v1. Zero-valued scalar fields are omitted as
// proto3 does; oneof members (AnyValue) are always written.
type encoder struct {
	index  map[*spans.Resource]int
	groups []encGroup
	order  []*spans.Span // the batch, grouped by resource
	sizes  []int         // encoded size of order[i]'s Span message
}

type encGroup struct {
	res        *spans.Resource // with valid UTF-8 (see sanitizeResource)
	start, n   int             // window of order
	resource   int             // size of the Resource message
	scopeSpans int             // size of the ScopeSpans message
	resSpans   int             // size of the ResourceSpans message
}

// Field numbers.
const (
	fReqResourceSpans = 1

	fRSResource   = 1
	fRSScopeSpans = 2

	fResAttributes = 1

	fSSScope = 1
	fSSSpans = 2

	fScopeName = 1

	fSpanTraceID      = 1
	fSpanSpanID       = 2
	fSpanTraceState   = 3
	fSpanParentSpanID = 4
	fSpanName         = 5
	fSpanKind         = 6
	fSpanStart        = 7
	fSpanEnd          = 8
	fSpanAttributes   = 9
	fSpanEvents       = 11
	fSpanStatus       = 15
	fSpanFlags        = 16

	fEventTime       = 1
	fEventName       = 2
	fEventAttributes = 3

	fStatusMessage = 2
	fStatusCode    = 3

	fKVKey   = 1
	fKVValue = 2

	fAnyString = 1
	fAnyBool   = 2
	fAnyInt    = 3
	fAnyDouble = 4
)

// scopeSize is the size of the InstrumentationScope message every ScopeSpans carries.
var scopeSize = protowire.SizeTag(fScopeName) + protowire.SizeBytes(len(ScopeName))

// prepare groups batch by resource pointer (order of first appearance, batch order
// within a group) and sizes every message; it returns the request's size.
func (e *encoder) prepare(batch []*spans.Span) int {
	if e.index == nil {
		e.index = make(map[*spans.Resource]int)
	}
	clear(e.index)
	e.groups = e.groups[:0]
	for _, s := range batch {
		gi, ok := e.index[s.Resource]
		if !ok {
			gi = len(e.groups)
			e.index[s.Resource] = gi
			e.groups = append(e.groups, encGroup{res: sanitizeResource(s.Resource)})
		}
		e.groups[gi].n++
	}
	off := 0
	for i := range e.groups {
		e.groups[i].start = off
		off += e.groups[i].n
		e.groups[i].n = 0 // counts again while placing
	}
	e.order = grow(e.order, len(batch))
	e.sizes = grow(e.sizes, len(batch))
	for _, s := range batch {
		g := &e.groups[e.index[s.Resource]]
		i := g.start + g.n
		s = sanitizeSpan(s)
		e.order[i] = s
		e.sizes[i] = spanSize(s)
		g.n++
	}

	total := 0
	for i := range e.groups {
		g := &e.groups[i]
		g.resource = 0
		if g.res != nil {
			g.resource = attrsSize(fResAttributes, g.res.Attrs)
		}
		g.scopeSpans = protowire.SizeTag(fSSScope) + protowire.SizeBytes(scopeSize)
		for _, n := range e.sizes[g.start : g.start+g.n] {
			g.scopeSpans += protowire.SizeTag(fSSSpans) + protowire.SizeBytes(n)
		}
		g.resSpans = protowire.SizeTag(fRSResource) + protowire.SizeBytes(g.resource) +
			protowire.SizeTag(fRSScopeSpans) + protowire.SizeBytes(g.scopeSpans)
		total += protowire.SizeTag(fReqResourceSpans) + protowire.SizeBytes(g.resSpans)
	}
	return total
}

// appendRequest appends the request prepared by the last prepare. The size and
// append functions below trust their strings to be valid UTF-8: prepare checked
// each span once.
func (e *encoder) appendRequest(b []byte) []byte {
	for i := range e.groups {
		g := &e.groups[i]
		b = appendLen(b, fReqResourceSpans, g.resSpans)
		b = appendLen(b, fRSResource, g.resource)
		if g.res != nil {
			b = appendAttrs(b, fResAttributes, g.res.Attrs)
		}
		b = appendLen(b, fRSScopeSpans, g.scopeSpans)
		b = appendLen(b, fSSScope, scopeSize)
		b = appendString(b, fScopeName, ScopeName)
		for j := g.start; j < g.start+g.n; j++ {
			b = appendLen(b, fSSSpans, e.sizes[j])
			b = appendSpan(b, e.order[j])
		}
	}
	return b
}

// release drops the encoder's references to the last batch's spans and resources,
// so that they can be collected while the batch is retried or the exporter idles.
func (e *encoder) release() {
	clear(e.order)
	clear(e.index)
	clear(e.groups)
}

func spanSize(s *spans.Span) int {
	n := protowire.SizeTag(fSpanTraceID) + protowire.SizeBytes(len(s.TraceID)) +
		protowire.SizeTag(fSpanSpanID) + protowire.SizeBytes(len(s.SpanID)) +
		stringSize(fSpanTraceState, s.TraceState) +
		stringSize(fSpanName, s.Name) +
		attrsSize(fSpanAttributes, s.Attrs)
	if s.ParentID.IsValid() {
		n += protowire.SizeTag(fSpanParentSpanID) + protowire.SizeBytes(len(s.ParentID))
	}
	if k := spanKind(s.Kind); k != 0 {
		n += protowire.SizeTag(fSpanKind) + protowire.SizeVarint(uint64(k))
	}
	if unixNano(s.Start) != 0 {
		n += protowire.SizeTag(fSpanStart) + protowire.SizeFixed64()
	}
	if unixNano(s.End) != 0 {
		n += protowire.SizeTag(fSpanEnd) + protowire.SizeFixed64()
	}
	for i := range s.Events {
		n += protowire.SizeTag(fSpanEvents) + protowire.SizeBytes(eventSize(&s.Events[i]))
	}
	if hasStatus(s) {
		n += protowire.SizeTag(fSpanStatus) + protowire.SizeBytes(statusSize(s))
	}
	if s.Flags != 0 {
		n += protowire.SizeTag(fSpanFlags) + protowire.SizeFixed32()
	}
	return n
}

func appendSpan(b []byte, s *spans.Span) []byte {
	b = protowire.AppendTag(b, fSpanTraceID, protowire.BytesType)
	b = protowire.AppendBytes(b, s.TraceID[:])
	b = protowire.AppendTag(b, fSpanSpanID, protowire.BytesType)
	b = protowire.AppendBytes(b, s.SpanID[:])
	b = appendString(b, fSpanTraceState, s.TraceState)
	if s.ParentID.IsValid() {
		b = protowire.AppendTag(b, fSpanParentSpanID, protowire.BytesType)
		b = protowire.AppendBytes(b, s.ParentID[:])
	}
	b = appendString(b, fSpanName, s.Name)
	if k := spanKind(s.Kind); k != 0 {
		b = protowire.AppendTag(b, fSpanKind, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(k))
	}
	if t := unixNano(s.Start); t != 0 {
		b = protowire.AppendTag(b, fSpanStart, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, t)
	}
	if t := unixNano(s.End); t != 0 {
		b = protowire.AppendTag(b, fSpanEnd, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, t)
	}
	b = appendAttrs(b, fSpanAttributes, s.Attrs)
	for i := range s.Events {
		ev := &s.Events[i]
		b = appendLen(b, fSpanEvents, eventSize(ev))
		if t := unixNano(ev.Time); t != 0 {
			b = protowire.AppendTag(b, fEventTime, protowire.Fixed64Type)
			b = protowire.AppendFixed64(b, t)
		}
		b = appendString(b, fEventName, ev.Name)
		b = appendAttrs(b, fEventAttributes, ev.Attrs)
	}
	if hasStatus(s) {
		b = appendLen(b, fSpanStatus, statusSize(s))
		b = appendString(b, fStatusMessage, s.StatusMessage)
		if c := statusCode(s.Status); c != 0 {
			b = protowire.AppendTag(b, fStatusCode, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(c))
		}
	}
	if s.Flags != 0 {
		b = protowire.AppendTag(b, fSpanFlags, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, uint32(s.Flags))
	}
	return b
}

func hasStatus(s *spans.Span) bool { return s.Status != spans.StatusUnset || s.StatusMessage != "" }

func statusSize(s *spans.Span) int {
	n := stringSize(fStatusMessage, s.StatusMessage)
	if c := statusCode(s.Status); c != 0 {
		n += protowire.SizeTag(fStatusCode) + protowire.SizeVarint(uint64(c))
	}
	return n
}

func eventSize(ev *spans.Event) int {
	n := stringSize(fEventName, ev.Name) + attrsSize(fEventAttributes, ev.Attrs)
	if unixNano(ev.Time) != 0 {
		n += protowire.SizeTag(fEventTime) + protowire.SizeFixed64()
	}
	return n
}

// attrsSize is the size of attrs as repeated KeyValue field num.
func attrsSize(num protowire.Number, attrs []spans.Attr) int {
	n := 0
	for i := range attrs {
		n += protowire.SizeTag(num) + protowire.SizeBytes(keyValueSize(&attrs[i]))
	}
	return n
}

func appendAttrs(b []byte, num protowire.Number, attrs []spans.Attr) []byte {
	for i := range attrs {
		a := &attrs[i]
		b = appendLen(b, num, keyValueSize(a))
		b = appendString(b, fKVKey, a.Key)
		b = appendLen(b, fKVValue, anyValueSize(a))
		switch a.Type {
		case spans.AttrInt:
			b = protowire.AppendTag(b, fAnyInt, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(a.Int))
		case spans.AttrBool:
			b = protowire.AppendTag(b, fAnyBool, protowire.VarintType)
			b = protowire.AppendVarint(b, protowire.EncodeBool(a.Bool))
		case spans.AttrFloat:
			b = protowire.AppendTag(b, fAnyDouble, protowire.Fixed64Type)
			b = protowire.AppendFixed64(b, math.Float64bits(a.Float))
		default:
			// A oneof member is written even when empty: "" is a value.
			b = protowire.AppendTag(b, fAnyString, protowire.BytesType)
			b = protowire.AppendString(b, a.Str)
		}
	}
	return b
}

func keyValueSize(a *spans.Attr) int {
	return stringSize(fKVKey, a.Key) + protowire.SizeTag(fKVValue) + protowire.SizeBytes(anyValueSize(a))
}

func anyValueSize(a *spans.Attr) int {
	switch a.Type {
	case spans.AttrInt:
		return protowire.SizeTag(fAnyInt) + protowire.SizeVarint(uint64(a.Int))
	case spans.AttrBool:
		return protowire.SizeTag(fAnyBool) + 1
	case spans.AttrFloat:
		return protowire.SizeTag(fAnyDouble) + protowire.SizeFixed64()
	}
	return protowire.SizeTag(fAnyString) + protowire.SizeBytes(len(a.Str))
}

// stringSize is the size of a proto3 string field: nothing when empty.
func stringSize(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendLen(b []byte, num protowire.Number, n int) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(n))
}

// Protobuf strings must be UTF-8 and a collector rejects the whole request
// otherwise, while paths and header values the proxy copies from the wire may
// hold any bytes. prepare checks each string once and encodes a repaired copy of
// the rare span or resource that needs it (U+FFFD for invalid bytes).

// validUTF8 returns s with invalid UTF-8 replaced by U+FFFD.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func sanitizeSpan(s *spans.Span) *spans.Span {
	if spanValid(s) {
		return s
	}
	c := *s
	c.TraceState = validUTF8(s.TraceState)
	c.Name = validUTF8(s.Name)
	c.StatusMessage = validUTF8(s.StatusMessage)
	c.Attrs = sanitizeAttrs(s.Attrs)
	c.Events = make([]spans.Event, len(s.Events))
	for i, ev := range s.Events {
		c.Events[i] = spans.Event{Name: validUTF8(ev.Name), Time: ev.Time, Attrs: sanitizeAttrs(ev.Attrs)}
	}
	return &c
}

func sanitizeResource(r *spans.Resource) *spans.Resource {
	if r == nil || attrsValid(r.Attrs) {
		return r
	}
	return &spans.Resource{Attrs: sanitizeAttrs(r.Attrs)}
}

func spanValid(s *spans.Span) bool {
	if !utf8.ValidString(s.TraceState) || !utf8.ValidString(s.Name) || !utf8.ValidString(s.StatusMessage) || !attrsValid(s.Attrs) {
		return false
	}
	for i := range s.Events {
		if !utf8.ValidString(s.Events[i].Name) || !attrsValid(s.Events[i].Attrs) {
			return false
		}
	}
	return true
}

func attrsValid(attrs []spans.Attr) bool {
	for i := range attrs {
		if !utf8.ValidString(attrs[i].Key) || (attrs[i].Type == spans.AttrString && !utf8.ValidString(attrs[i].Str)) {
			return false
		}
	}
	return true
}

func sanitizeAttrs(attrs []spans.Attr) []spans.Attr {
	if attrsValid(attrs) {
		return attrs
	}
	out := make([]spans.Attr, len(attrs))
	for i, a := range attrs {
		a.Key = validUTF8(a.Key)
		if a.Type == spans.AttrString {
			a.Str = validUTF8(a.Str)
		}
		out[i] = a
	}
	return out
}
