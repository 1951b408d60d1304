package main

import (
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// countSpans agrees with a full decode, and refuses what is not protobuf.
func TestCountSpans(t *testing.T) {
	scope := func(n int) *tracepb.ScopeSpans {
		ss := &tracepb.ScopeSpans{}
		for range n {
			ss.Spans = append(ss.Spans, &tracepb.Span{Name: "GET", TraceId: make([]byte, 16), SpanId: make([]byte, 8)})
		}
		return ss
	}
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{
		{ScopeSpans: []*tracepb.ScopeSpans{scope(3), scope(0), scope(2)}, SchemaUrl: "x"},
		{ScopeSpans: []*tracepb.ScopeSpans{scope(5)}},
		{},
	}}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := countSpans(b); err != nil || n != 10 {
		t.Errorf("countSpans = %d, %v; want 10", n, err)
	}
	if n, err := countSpans(nil); err != nil || n != 0 {
		t.Errorf("empty request: %d, %v", n, err)
	}
	for _, bad := range [][]byte{b[:len(b)-3], {0x0a, 0x05, 0x12}, {0xff}} {
		if _, err := countSpans(bad); err == nil {
			t.Errorf("countSpans(%x) took malformed protobuf", bad)
		}
	}
}
