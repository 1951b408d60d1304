package exporter

import (
	"bytes"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/hoptrace/hoptrace/spans"
)

func TestToResourceSpansGroupsByResourcePointer(t *testing.T) {
	a := podResource("a", "a-1")
	b := podResource("b", "b-1")
	a2 := podResource("a", "a-1") // same content, another pod object: its own group
	var batch []*spans.Span
	batch = append(batch, hop(a, b, time.Now(), 200)...) // b, b, a, a
	batch = append(batch, &spans.Span{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Name: "x", Resource: a2})
	batch = append(batch, &spans.Span{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Name: "no resource"})
	batch = append(batch, hop(a, b, time.Now(), 200)...)

	rss := toResourceSpans(batch)
	type want struct {
		pod   string
		spans int
	}
	wants := []want{{"b-1", 4}, {"a-1", 4}, {"a-1", 1}, {"", 1}} // order of first appearance
	if len(rss) != len(wants) {
		t.Fatalf("got %d ResourceSpans, want %d", len(rss), len(wants))
	}
	total := 0
	for i, w := range wants {
		rs := rss[i]
		if got := attr(rs.GetResource().GetAttributes(), "k8s.pod.name").GetStringValue(); got != w.pod {
			t.Errorf("group %d: pod %q, want %q", i, got, w.pod)
		}
		if len(rs.ScopeSpans) != 1 || rs.ScopeSpans[0].GetScope().GetName() != ScopeName {
			t.Fatalf("group %d: want one scope %q, got %v", i, ScopeName, rs.ScopeSpans)
		}
		if got := len(rs.ScopeSpans[0].Spans); got != w.spans {
			t.Errorf("group %d: %d spans, want %d", i, got, w.spans)
		}
		total += len(rs.ScopeSpans[0].Spans)
	}
	if total != len(batch) {
		t.Errorf("converted %d spans, want %d", total, len(batch))
	}
	// Within a group, batch order: the first hop's B spans come before the second's.
	if got, want := rss[0].ScopeSpans[0].Spans[0].SpanId, batch[0].SpanID[:]; !bytes.Equal(got, want) {
		t.Errorf("first span of group b is %x, want %x", got, want)
	}
}

func TestToResourceSpansFields(t *testing.T) {
	start := time.Unix(1700000000, 123456789)
	batch := hop(podResource("a", "a-1"), podResource("b", "b-1"), start, 503)
	rss := toResourceSpans(batch)

	// batch[3] is the outbound-server root span of pod a.
	src := batch[3]
	var got *tracepb.Span
	for _, rs := range rss {
		for _, s := range rs.ScopeSpans[0].Spans {
			if bytes.Equal(s.SpanId, src.SpanID[:]) {
				got = s
			}
		}
	}
	if got == nil {
		t.Fatal("root span not converted")
	}
	want := &tracepb.Span{
		TraceId:           src.TraceID[:],
		SpanId:            src.SpanID[:],
		TraceState:        "vendor=x",
		Flags:             1,
		Name:              "GET /users/{id}",
		Kind:              tracepb.Span_SPAN_KIND_SERVER,
		StartTimeUnixNano: uint64(start.UnixNano()),
		EndTimeUnixNano:   uint64(start.Add(20 * time.Millisecond).UnixNano()),
		Attributes: []*commonpb.KeyValue{
			kvStr("http.request.method", "GET"),
			kvStr("url.path", "/users/42"),
			kvStr("server.address", "b.shop.svc"),
			{Key: "http.response.status_code", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 503}}},
			kvStr("hoptrace.leg", "outbound-server"),
			{Key: "hoptrace.sampled", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}},
			{Key: "hoptrace.sample_rate", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 0.25}}},
		},
		Events: []*tracepb.Span_Event{
			{Name: "wire send", TimeUnixNano: uint64(start.Add(time.Millisecond).UnixNano()),
				Attributes: []*commonpb.KeyValue{{Key: "bytes", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 120}}}}},
			{Name: "first response byte", TimeUnixNano: uint64(start.Add(10 * time.Millisecond).UnixNano())},
		},
		Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "upstream answered 503"},
	}
	if !proto.Equal(got, want) {
		t.Errorf("converted span:\n got %v\nwant %v", got, want)
	}

	// Parent ids and kinds of the other legs.
	byID := map[string]*tracepb.Span{}
	for _, rs := range rss {
		for _, s := range rs.ScopeSpans[0].Spans {
			byID[string(s.SpanId)] = s
		}
	}
	for i, s := range batch {
		c := byID[string(s.SpanID[:])]
		if s.ParentID.IsValid() != (len(c.ParentSpanId) > 0) || (s.ParentID.IsValid() && !bytes.Equal(c.ParentSpanId, s.ParentID[:])) {
			t.Errorf("span %d: parent %x, want %x", i, c.ParentSpanId, s.ParentID)
		}
		if c.Kind != tracepb.Span_SpanKind(spanKind(s.Kind)) {
			t.Errorf("span %d: kind %v, want %v", i, c.Kind, s.Kind)
		}
	}
}

func TestSpanKindAndStatusMapping(t *testing.T) {
	kinds := map[spans.Kind]tracepb.Span_SpanKind{
		spans.KindUnspecified: tracepb.Span_SPAN_KIND_UNSPECIFIED,
		spans.KindInternal:    tracepb.Span_SPAN_KIND_INTERNAL,
		spans.KindServer:      tracepb.Span_SPAN_KIND_SERVER,
		spans.KindClient:      tracepb.Span_SPAN_KIND_CLIENT,
		spans.Kind(99):        tracepb.Span_SPAN_KIND_UNSPECIFIED,
	}
	for k, want := range kinds {
		if got := tracepb.Span_SpanKind(spanKind(k)); got != want {
			t.Errorf("spanKind(%d) = %v, want %v", k, got, want)
		}
	}
	statuses := map[spans.Status]tracepb.Status_StatusCode{
		spans.StatusUnset: tracepb.Status_STATUS_CODE_UNSET,
		spans.StatusOK:    tracepb.Status_STATUS_CODE_OK,
		spans.StatusError: tracepb.Status_STATUS_CODE_ERROR,
	}
	for s, want := range statuses {
		if got := tracepb.Status_StatusCode(statusCode(s)); got != want {
			t.Errorf("statusCode(%d) = %v, want %v", s, got, want)
		}
	}
	if unixNano(time.Time{}) != 0 {
		t.Error("zero time must convert to 0 (unknown)")
	}
}

func kvStr(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func attr(kvs []*commonpb.KeyValue, key string) *commonpb.AnyValue {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value
		}
	}
	return nil
}
