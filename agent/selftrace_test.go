package agent

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/spans"
)

type selfRecorder struct {
	mu sync.Mutex
	ss []*spans.Span
}

func (r *selfRecorder) Record(s *spans.Span) {
	r.mu.Lock()
	r.ss = append(r.ss, spans.Build(s, new(spans.Span)))
	r.mu.Unlock()
}

func selfAttr(s *spans.Span, key string) string {
	for _, a := range s.Attrs {
		if a.Key == key {
			return a.Str
		}
	}
	return ""
}

// --self-trace records each operation as a root span of the hoptrace-agent
// service when it ends, with the error as status and exception event.
func TestSelfTracer(t *testing.T) {
	rec := &selfRecorder{}
	tr := newSelfTracer(rec, "node-1")
	before := time.Now()
	tr.start(context.Background(), "hoptrace.pod.attach", spans.String("k8s.pod.name", "web"))(nil)
	tr.start(context.Background(), "hoptrace.pod.detach", spans.String("k8s.pod.name", "db"))(errors.New("netns gone"))
	tr.shutdown(context.Background())
	if len(rec.ss) != 2 {
		t.Fatalf("%d spans recorded, want 2", len(rec.ss))
	}
	ok, failed := rec.ss[0], rec.ss[1]
	for _, s := range rec.ss {
		if !s.TraceID.IsValid() || !s.SpanID.IsValid() || s.ParentID.IsValid() || s.Flags&1 == 0 {
			t.Errorf("%s: ids %v %v parent %v flags %d: want a sampled root span", s.Name, s.TraceID, s.SpanID, s.ParentID, s.Flags)
		}
		if s.Kind != spans.KindInternal || s.Start.Before(before) || s.End.Before(s.Start) {
			t.Errorf("%s: kind %v, %v to %v", s.Name, s.Kind, s.Start, s.End)
		}
		if s.Resource.ServiceName() != "hoptrace-agent" {
			t.Errorf("%s: service %q", s.Name, s.Resource.ServiceName())
		}
	}
	if rec.ss[0].TraceID == rec.ss[1].TraceID {
		t.Error("two operations share a trace")
	}
	if ok.Name != "hoptrace.pod.attach" || selfAttr(ok, "k8s.pod.name") != "web" || ok.Status != spans.StatusUnset || len(ok.Events) != 0 {
		t.Errorf("attach span: %+v", ok)
	}
	if failed.Status != spans.StatusError || failed.StatusMessage != "netns gone" || len(failed.Events) != 1 ||
		failed.Events[0].Name != "exception" || failed.Events[0].Attrs[1].Str != "netns gone" {
		t.Errorf("failed detach span: status %v %q, events %+v", failed.Status, failed.StatusMessage, failed.Events)
	}

	var none *selfTracer
	none.start(context.Background(), "x")(errors.New("ignored")) // must not panic
	none.shutdown(context.Background())
}
