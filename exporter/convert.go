package exporter

import (
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/hoptrace/hoptrace/spans"
)

// ScopeName is the instrumentation scope of every exported span.
const ScopeName = "github.com/hoptrace/hoptrace"

// ToResourceSpans converts span records to OTLP messages: one ResourceSpans per
// distinct *spans.Resource in order of first appearance, with one ScopeSpans
// (ScopeName) holding the spans in batch order. It is the readable reference of
// what the exporter sends (its wire encoder is tested against it) and serves
// debugging and other sinks; the exporter itself does not build these messages.
// Invalid UTF-8 in strings becomes U+FFFD, as on the wire.
func ToResourceSpans(batch []*spans.Span) []*tracepb.ResourceSpans {
	index := map[*spans.Resource]int{}
	var out []*tracepb.ResourceSpans
	for _, s := range batch {
		i, ok := index[s.Resource]
		if !ok {
			i = len(out)
			index[s.Resource] = i
			res := &resourcepb.Resource{}
			if s.Resource != nil {
				res.Attributes = toKeyValues(s.Resource.Attrs)
			}
			out = append(out, &tracepb.ResourceSpans{
				Resource:   res,
				ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: ScopeName}}},
			})
		}
		ss := out[i].ScopeSpans[0]
		ss.Spans = append(ss.Spans, toSpan(s))
	}
	return out
}

func toSpan(s *spans.Span) *tracepb.Span {
	p := &tracepb.Span{
		TraceId:           s.TraceID[:],
		SpanId:            s.SpanID[:],
		TraceState:        validUTF8(s.TraceState),
		Flags:             uint32(s.Flags),
		Name:              validUTF8(s.Name),
		Kind:              spanKind(s.Kind),
		StartTimeUnixNano: unixNano(s.Start),
		EndTimeUnixNano:   unixNano(s.End),
		Attributes:        toKeyValues(s.Attrs),
	}
	if s.ParentID.IsValid() {
		p.ParentSpanId = s.ParentID[:]
	}
	for _, e := range s.Events {
		p.Events = append(p.Events, &tracepb.Span_Event{
			TimeUnixNano: unixNano(e.Time),
			Name:         validUTF8(e.Name),
			Attributes:   toKeyValues(e.Attrs),
		})
	}
	if hasStatus(s) {
		p.Status = &tracepb.Status{Code: statusCode(s.Status), Message: validUTF8(s.StatusMessage)}
	}
	return p
}

func toKeyValues(attrs []spans.Attr) []*commonpb.KeyValue {
	if len(attrs) == 0 {
		return nil
	}
	out := make([]*commonpb.KeyValue, len(attrs))
	for i, a := range attrs {
		v := &commonpb.AnyValue{}
		switch a.Type {
		case spans.AttrInt:
			v.Value = &commonpb.AnyValue_IntValue{IntValue: a.Int}
		case spans.AttrBool:
			v.Value = &commonpb.AnyValue_BoolValue{BoolValue: a.Bool}
		case spans.AttrFloat:
			v.Value = &commonpb.AnyValue_DoubleValue{DoubleValue: a.Float}
		default:
			v.Value = &commonpb.AnyValue_StringValue{StringValue: validUTF8(a.Str)}
		}
		out[i] = &commonpb.KeyValue{Key: validUTF8(a.Key), Value: v}
	}
	return out
}

// grow returns s with length n, reusing its backing array when it is large enough.
func grow[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]T, n, n+n/4)
}

func spanKind(k spans.Kind) tracepb.Span_SpanKind {
	switch k {
	case spans.KindInternal:
		return tracepb.Span_SPAN_KIND_INTERNAL
	case spans.KindServer:
		return tracepb.Span_SPAN_KIND_SERVER
	case spans.KindClient:
		return tracepb.Span_SPAN_KIND_CLIENT
	}
	return tracepb.Span_SPAN_KIND_UNSPECIFIED
}

func statusCode(s spans.Status) tracepb.Status_StatusCode {
	switch s {
	case spans.StatusOK:
		return tracepb.Status_STATUS_CODE_OK
	case spans.StatusError:
		return tracepb.Status_STATUS_CODE_ERROR
	}
	return tracepb.Status_STATUS_CODE_UNSET
}

// unixNano maps the zero time to 0 ("unknown" in OTLP) instead of a negative value.
func unixNano(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixNano())
}
