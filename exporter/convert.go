package exporter

import (
	"time"

	"github.com/hoptrace/hoptrace/spans"
)

// ScopeName is the instrumentation scope of every exported span.
const ScopeName = "github.com/hoptrace/hoptrace"

// grow returns s with length n, reusing its backing array when it is large enough.
func grow[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]T, n, n+n/4)
}

// spanKind is the OTLP Span.SpanKind value of k.
func spanKind(k spans.Kind) int32 {
	switch k {
	case spans.KindInternal:
		return 1 // SPAN_KIND_INTERNAL
	case spans.KindServer:
		return 2 // SPAN_KIND_SERVER
	case spans.KindClient:
		return 3 // SPAN_KIND_CLIENT
	}
	return 0 // SPAN_KIND_UNSPECIFIED
}

// statusCode is the OTLP Status.StatusCode value of s.
func statusCode(s spans.Status) int32 {
	switch s {
	case spans.StatusOK:
		return 1 // STATUS_CODE_OK
	case spans.StatusError:
		return 2 // STATUS_CODE_ERROR
	}
	return 0 // STATUS_CODE_UNSET
}

// unixNano maps the zero time to 0 ("unknown" in OTLP) instead of a negative value.
func unixNano(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixNano())
}
