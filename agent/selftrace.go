package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/hoptrace/hoptrace/spans"
)

// selfTracer traces the agent's own operations (BPF load, pod attach and
// detach) as span records of its own, which leave through the agent's
// exporter, so they share its endpoint, TLS, headers, retries and counters. A
// nil *selfTracer is valid and records nothing, so call sites need no checks.
//
// Each operation is a root span: nothing the agent does nests. It used the
// OpenTelemetry SDK for this; the SDK added 1.7 MB to the binary and its
// package initialisation to every agent's resident memory, for a few spans a
// minute that the agent can build like the ones it records for pods.
type selfTracer struct {
	rec spans.Recorder
	res *spans.Resource
}

func newSelfTracer(rec spans.Recorder, node string) *selfTracer {
	attrs := []spans.Attr{spans.String("service.name", "hoptrace-agent"), spans.String("telemetry.sdk.name", "hoptrace"), spans.String("telemetry.sdk.language", "go")}
	if node != "" {
		attrs = append(attrs, spans.String("k8s.node.name", node))
	}
	return &selfTracer{rec: rec, res: &spans.Resource{Attrs: attrs}}
}

// start begins a span; the returned func ends it, marking err if not nil.
func (t *selfTracer) start(_ context.Context, name string, attrs ...spans.Attr) func(error) {
	if t == nil {
		return func(error) {}
	}
	s := &spans.Span{
		TraceID:  spans.NewTraceID(),
		SpanID:   spans.NewSpanID(),
		Flags:    1, // sampled
		Name:     name,
		Kind:     spans.KindInternal,
		Start:    time.Now(),
		Attrs:    append([]spans.Attr(nil), attrs...),
		Resource: t.res,
	}
	return func(err error) {
		s.End = time.Now()
		if err != nil {
			// As the OpenTelemetry SDK's RecordError does: an exception
			// event, and the error as the status.
			s.Events = []spans.Event{{Name: "exception", Time: s.End, Attrs: []spans.Attr{
				spans.String("exception.type", fmt.Sprintf("%T", err)),
				spans.String("exception.message", err.Error()),
			}}}
			s.Status, s.StatusMessage = spans.StatusError, err.Error()
		}
		t.rec.Record(s)
	}
}

// shutdown is a no-op: every span went to the recorder when it ended.
func (t *selfTracer) shutdown(context.Context) {}
