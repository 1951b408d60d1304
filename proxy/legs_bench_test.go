package proxy

import (
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/spans"
)

// BenchmarkSpanRecords measures what a sampled HTTP/1 request costs one proxy
// to record once it is done: "recorded" is what runs on the request's
// goroutine (its legs copied into a record of its two deferred spans, handed
// to the recorder), "built" that and building both spans, which the exporter
// does on its own goroutine just before encoding them (spans.Builder). Four
// spans per hop are twice this; the exporter's encoding is BenchmarkEncode in
// package exporter. Run:
//
//	go test ./proxy -run '^$' -bench SpanRecords -benchmem -count 5
func BenchmarkSpanRecords(b *testing.B) {
	b.Run("recorded", func(b *testing.B) { benchmarkSpanRecords(b, &discard{noBuild: true}) })
	b.Run("built", func(b *testing.B) { benchmarkSpanRecords(b, &discard{}) })
}

func benchmarkSpanRecords(b *testing.B, rec spans.Recorder) {
	p, err := New(Config{
		Direction:      Outbound,
		Resolver:       fixedResolver(netip.MustParseAddrPort("10.0.0.2:8080")),
		Recorder:       rec,
		Sampler:        spans.NewSampler(1),
		Resource:       &spans.Resource{Attrs: []spans.Attr{spans.String("service.name", "web")}},
		CaptureHeaders: []string{"X-Tenant"},
	})
	if err != nil {
		b.Fatal(err)
	}
	info := RequestInfo{
		Protocol: ProtocolHTTP1, Version: "1.1", Method: "GET", Path: "/users/42", Host: "svc-b.test:8080",
		UserAgent: "curl/8.5.0", Peer: netip.MustParseAddrPort("10.0.0.1:40000"), Dst: netip.MustParseAddrPort("10.0.0.2:8080"),
	}
	h := http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "X-Tenant": {"acme"}}
	fl := &flow{}
	var l legs
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		now := time.Now()
		h["Traceparent"] = []string{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
		p.tr.begin(&l, info, h, now)
		l.dialStart, l.cliStart, l.sent, l.firstByte, l.cliEnd, l.respHeader = now, now, now, now, now, now
		l.response(200, http.Header{})
		l.finish(now, fl)
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	if d, ok := rec.(*discard); ok && d.n.Load() == 0 {
		b.Fatal("nothing recorded")
	}
}
