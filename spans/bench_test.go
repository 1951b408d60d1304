package spans

import (
	"net/http"
	"testing"
)

// Benchmarks of the per-request work in the proxy. Parsing must not allocate: it
// runs on every request, sampled or not.

var (
	sinkContext Context
	sinkBool    bool
	sinkString  string
)

func benchmarkExtract(b *testing.B, h http.Header) {
	b.ReportAllocs()
	for b.Loop() {
		sinkContext, sinkBool = Extract(h)
	}
	if !sinkBool && sinkContext.Formats == 0 {
		b.Fatalf("Extract(%v) found nothing", h)
	}
}

func BenchmarkExtractTraceparent(b *testing.B) {
	benchmarkExtract(b, http.Header{HeaderTraceparent: {tpValid}})
}

func BenchmarkExtractTraceparentTracestate(b *testing.B) {
	benchmarkExtract(b, http.Header{HeaderTraceparent: {tpValid}, HeaderTracestate: {"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"}})
}

func BenchmarkExtractB3Single(b *testing.B) {
	benchmarkExtract(b, http.Header{HeaderB3: {b3Trace + "-" + b3Span + "-1-" + b3Parent}})
}

func BenchmarkExtractB3Multi(b *testing.B) {
	benchmarkExtract(b, http.Header{
		HeaderB3TraceID: {b3Trace}, HeaderB3SpanID: {b3Span}, HeaderB3ParentID: {b3Parent}, HeaderB3Sampled: {"1"},
	})
}

// The common case of a request from an app that forwards nothing.
func BenchmarkExtractNone(b *testing.B) {
	h := http.Header{"Accept": {"*/*"}, "User-Agent": {"curl/8"}}
	b.ReportAllocs()
	for b.Loop() {
		sinkContext, sinkBool = Extract(h)
	}
}

func benchmarkInject(b *testing.B, c Context) {
	h := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		Inject(h, c)
	}
}

func benchContext(f Format) Context {
	c := Context{Sampled: true, Random: true, TraceState: "rojo=00f067aa0ba902b7", Formats: f}
	decodeHex(c.TraceID[:], tpTrace)
	decodeHex(c.SpanID[:], tpParent)
	return c
}

func BenchmarkInjectW3C(b *testing.B)      { benchmarkInject(b, benchContext(FormatW3C)) }
func BenchmarkInjectB3Single(b *testing.B) { benchmarkInject(b, benchContext(FormatB3Single)) }
func BenchmarkInjectB3Multi(b *testing.B)  { benchmarkInject(b, benchContext(FormatB3Multi)) }

func BenchmarkDecideWithParent(b *testing.B) {
	s := NewSampler(0.001)
	h := http.Header{HeaderTraceparent: {tpValid}}
	b.ReportAllocs()
	for b.Loop() {
		sinkContext = s.Decide(h)
	}
}

func BenchmarkDecideNewTrace(b *testing.B) {
	s := NewSampler(0.001)
	h := http.Header{"Accept": {"*/*"}}
	b.ReportAllocs()
	for b.Loop() {
		sinkContext = s.Decide(h)
	}
}

func BenchmarkSpanName(b *testing.B) {
	r, err := NewRoutes([]string{"/users/{id}", "/users/{id}/orders/{order}", "/static/", "/healthz"})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, path string }{
		{"match", "/users/42/orders/7"},
		{"miss", "/nothing/here"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkString = r.SpanName("GET", bc.path)
			}
		})
	}
}
