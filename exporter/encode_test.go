package exporter

import (
	"math"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/hoptrace/hoptrace/spans"
)

// encodeBatch runs the exporter's wire encoder and decodes the result with the
// OTLP protobuf types.
func encodeBatch(t *testing.T, enc *encoder, batch []*spans.Span) *coltracepb.ExportTraceServiceRequest {
	t.Helper()
	size := enc.prepare(batch)
	b := enc.appendRequest(nil)
	if len(b) != size {
		t.Fatalf("encoded %d bytes, prepare said %d", len(b), size)
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		t.Fatalf("the encoding does not decode as ExportTraceServiceRequest: %v", err)
	}
	return &req
}

// The wire encoder and the message-based reference must agree on every batch
// shape, including a reused encoder after a larger batch.
func TestEncoderMatchesReference(t *testing.T) {
	a, b := podResource("a", "a-1"), podResource("b", "b-1")
	odd := []*spans.Span{
		{}, // all zero: zero ids, no resource, no times
		{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Name: "empty strings", Resource: a,
			Attrs: []spans.Attr{spans.String("", ""), spans.String("k", ""), spans.Int("neg", -1), spans.Int("zero", 0),
				spans.Bool("f", false), spans.Float("nan", math.NaN()), spans.Float("inf", math.Inf(-1)), spans.Float("z", 0)}},
		{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Kind: spans.KindInternal, Status: spans.StatusOK,
			Events: []spans.Event{{}, {Name: "only name"}}, Resource: &spans.Resource{}},
		{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), StatusMessage: "message without code", Flags: 3,
			Start: time.Unix(0, 1), End: time.Unix(1<<33, 0), Resource: b},
		{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Name: "big", Resource: b,
			Attrs: []spans.Attr{spans.String("long", string(make([]byte, 300))), spans.Int("max", math.MaxInt64)}},
	}
	var reused encoder
	for name, batch := range map[string][]*spans.Span{
		"hops":        hops(40, a, b),
		"odd spans":   odd,
		"single":      hop(a, b, time.Now(), 503)[:1],
		"empty":       nil,
		"many groups": append(hops(3, podResource("x", "x"), podResource("y", "y")), hops(2, a, b)...),
	} {
		t.Run(name, func(t *testing.T) {
			want := &coltracepb.ExportTraceServiceRequest{ResourceSpans: ToResourceSpans(batch)}
			var fresh encoder
			for _, enc := range []*encoder{&fresh, &reused} {
				got := encodeBatch(t, enc, batch)
				if !proto.Equal(got, want) {
					t.Fatalf("encoder output differs from ToResourceSpans:\n got %v\nwant %v", got, want)
				}
			}
		})
	}
}

func TestEncoderReplacesInvalidUTF8(t *testing.T) {
	res := &spans.Resource{Attrs: []spans.Attr{spans.String("service.name", "bad\xffsvc")}}
	s := &spans.Span{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Name: "GET /caf\xe9",
		Attrs:    []spans.Attr{spans.String("url.path", "/a\xff\xfeb"), spans.String("k\xc3", "v"), spans.Int("n", 1)},
		Events:   []spans.Event{{Name: "ev\xff", Attrs: []spans.Attr{spans.String("x", "\xff")}}},
		Resource: res}
	ok := &spans.Span{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Name: "fine", Resource: res}
	batch := []*spans.Span{s, ok}
	var enc encoder
	req := encodeBatch(t, &enc, batch)
	want := &coltracepb.ExportTraceServiceRequest{ResourceSpans: ToResourceSpans(batch)}
	if !proto.Equal(req, want) {
		t.Errorf("encoder and reference repair differently:\n got %v\nwant %v", req, want)
	}
	if v := attr(req.ResourceSpans[0].Resource.Attributes, "service.name").GetStringValue(); v != "bad\uFFFDsvc" {
		t.Errorf("service.name %q", v)
	}
	if s.Name != "GET /caf\xe9" || res.Attrs[0].Str != "bad\xffsvc" {
		t.Error("encoding modified the span record")
	}
	got := req.ResourceSpans[0].ScopeSpans[0].Spans[0]
	if got.Name != "GET /caf\uFFFD" {
		t.Errorf("name %q", got.Name)
	}
	if v := attr(got.Attributes, "url.path").GetStringValue(); v != "/a\uFFFDb" {
		t.Errorf("url.path %q", v)
	}
	if attr(got.Attributes, "k\uFFFD") == nil {
		t.Errorf("attribute key not repaired: %v", got.Attributes)
	}
}

func TestEncoderDoesNotAllocateWhenWarm(t *testing.T) {
	batch := hops(128, podResource("a", "a-1"), podResource("b", "b-1"))
	var enc encoder
	buf := enc.appendRequest(make([]byte, 0, enc.prepare(batch)))
	allocs := testing.AllocsPerRun(20, func() {
		enc.prepare(batch)
		buf = enc.appendRequest(buf[:0])
	})
	if allocs != 0 {
		t.Errorf("encoding a warm batch allocates %.1f times", allocs)
	}
}
