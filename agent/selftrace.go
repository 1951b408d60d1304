package agent

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/hoptrace/hoptrace/spans"
)

// selfTracer traces the agent's own operations (BPF load, pod attach and
// detach) with the OpenTelemetry SDK. Its spans leave through the agent's own
// exporter, so they share its endpoint, TLS, headers, retries and counters. A
// nil *selfTracer is valid and records nothing, so call sites need no checks.
type selfTracer struct {
	tp *sdktrace.TracerProvider
	tr trace.Tracer
}

func newSelfTracer(rec spans.Recorder, node string) *selfTracer {
	attrs := []spans.Attr{spans.String("service.name", "hoptrace-agent"), spans.String("telemetry.sdk.name", "opentelemetry"), spans.String("telemetry.sdk.language", "go")}
	if node != "" {
		attrs = append(attrs, spans.String("k8s.node.name", node))
	}
	exp := &recorderExporter{rec: rec, res: &spans.Resource{Attrs: attrs}}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		// The agent's exporter batches already; a syncer hands spans straight over.
		sdktrace.WithSyncer(exp),
	)
	return &selfTracer{tp: tp, tr: tp.Tracer("github.com/hoptrace/hoptrace/agent")}
}

// start begins a span; the returned func ends it, marking err if not nil.
func (t *selfTracer) start(ctx context.Context, name string, attrs ...spans.Attr) func(error) {
	if t == nil {
		return func(error) {}
	}
	kvs := make([]attribute.KeyValue, 0, len(attrs))
	for _, a := range attrs {
		kvs = append(kvs, attribute.String(a.Key, a.Str))
	}
	_, span := t.tr.Start(ctx, name, trace.WithAttributes(kvs...), trace.WithSpanKind(trace.SpanKindInternal))
	return func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

func (t *selfTracer) shutdown(ctx context.Context) {
	if t != nil {
		_ = t.tp.Shutdown(ctx)
	}
}

// recorderExporter converts finished SDK spans into span records.
type recorderExporter struct {
	rec spans.Recorder
	res *spans.Resource
}

func (e *recorderExporter) ExportSpans(_ context.Context, ss []sdktrace.ReadOnlySpan) error {
	for _, s := range ss {
		sc := s.SpanContext()
		rec := &spans.Span{
			TraceID:  spans.TraceID(sc.TraceID()),
			SpanID:   spans.SpanID(sc.SpanID()),
			ParentID: spans.SpanID(s.Parent().SpanID()),
			Flags:    uint8(sc.TraceFlags()),
			Name:     s.Name(),
			Kind:     spans.KindInternal,
			Start:    s.StartTime(),
			End:      s.EndTime(),
			Attrs:    convertAttrs(s.Attributes()),
			Resource: e.res,
		}
		for _, ev := range s.Events() {
			rec.Events = append(rec.Events, spans.Event{Name: ev.Name, Time: ev.Time, Attrs: convertAttrs(ev.Attributes)})
		}
		switch s.Status().Code {
		case codes.Error:
			rec.Status, rec.StatusMessage = spans.StatusError, s.Status().Description
		case codes.Ok:
			rec.Status = spans.StatusOK
		}
		e.rec.Record(rec)
	}
	return nil
}

func (e *recorderExporter) Shutdown(context.Context) error { return nil }

func convertAttrs(kvs []attribute.KeyValue) []spans.Attr {
	out := make([]spans.Attr, 0, len(kvs))
	for _, kv := range kvs {
		k := string(kv.Key)
		switch kv.Value.Type() {
		case attribute.BOOL:
			out = append(out, spans.Bool(k, kv.Value.AsBool()))
		case attribute.INT64:
			out = append(out, spans.Int(k, kv.Value.AsInt64()))
		case attribute.FLOAT64:
			out = append(out, spans.Float(k, kv.Value.AsFloat64()))
		default:
			out = append(out, spans.String(k, kv.Value.Emit()))
		}
	}
	return out
}
