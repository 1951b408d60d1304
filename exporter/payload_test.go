package exporter

import (
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/hoptrace/hoptrace/spans"
)

// A payload holds the whole request whatever the size hint said, and lets go of
// the batch.
func TestEncodePayload(t *testing.T) {
	var enc encoder
	small := hops(1, podResource("a", "a-1"), podResource("b", "b-1"))
	large := hops(300, podResource("a", "a-1"), podResource("b", "b-1"))
	for _, batch := range [][]*spans.Span{small, large, small} {
		p := encodePayload(&enc, batch)
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(p.bytes(), &req); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&req, &coltracepb.ExportTraceServiceRequest{ResourceSpans: toResourceSpans(batch)}) {
			t.Fatalf("payload of %d spans differs from the reference", len(batch))
		}
		p.free()
		for _, s := range enc.order {
			if s != nil {
				t.Fatal("the encoder still references the batch")
			}
		}
	}
}

func TestBufferPoolDropsOversizedBuffers(t *testing.T) {
	var p bufferPool
	big := p.Get(8 << 20)
	p.Put(big)
	if b := p.Get(64 << 10); cap(*b) >= 8<<20 {
		t.Errorf("a 64 KiB request got the %d-byte buffer", cap(*b))
	}
}
