package exporter

import (
	"strings"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/hoptrace/hoptrace/spans"
)

// toResourceSpans converts span records to OTLP messages: one ResourceSpans per
// distinct *spans.Resource in order of first appearance, with one ScopeSpans
// (ScopeName) holding the spans in batch order. It is the readable reference of
// what the exporter sends: the wire encoder is tested against it.
// Invalid UTF-8 in strings becomes U+FFFD, as on the wire.
func toResourceSpans(batch []*spans.Span) []*tracepb.ResourceSpans {
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
		TraceState:        repairUTF8(s.TraceState),
		Flags:             uint32(s.Flags),
		Name:              repairUTF8(s.Name),
		Kind:              tracepb.Span_SpanKind(spanKind(s.Kind)),
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
			Name:         repairUTF8(e.Name),
			Attributes:   toKeyValues(e.Attrs),
		})
	}
	if s.Status != spans.StatusUnset || s.StatusMessage != "" {
		p.Status = &tracepb.Status{Code: tracepb.Status_StatusCode(statusCode(s.Status)), Message: repairUTF8(s.StatusMessage)}
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
			v.Value = &commonpb.AnyValue_StringValue{StringValue: repairUTF8(a.Str)}
		}
		out[i] = &commonpb.KeyValue{Key: repairUTF8(a.Key), Value: v}
	}
	return out
}

func repairUTF8(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
