package exporter

import (
	"context"
	"fmt"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/internal/jaegertest"
	"github.com/hoptrace/hoptrace/spans"
)

// These tests run a real Jaeger (jaegertest): they skip without its binary unless
// CI or HOPTRACE_REQUIRE_PRIVILEGED=1 demands it. The two outage tests run in
// parallel, each with its own Jaeger, to keep the suite near 30 s.

// TestJaegerReceivesSpans exports hops over gRPC and over HTTP and reads them back
// through Jaeger's query API: structure, kinds, attributes, events, resources.
func TestJaegerReceivesSpans(t *testing.T) {
	j := jaegertest.Start(t)
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"grpc", Config{Protocol: ProtocolGRPC, Endpoint: "http://" + j.OTLPGRPCAddr}},
		{"http", Config{Protocol: ProtocolHTTPProtobuf, Endpoint: j.OTLPHTTPURL, Compression: CompressionGzip}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := podResource("frontend-"+tt.name, "frontend-7d4f9-x2x1")
			b := podResource("users-"+tt.name, "users-5c6b8-k9k2")
			var batch []*spans.Span
			for i := range 3 {
				batch = append(batch, hop(a, b, time.Now(), int64(200+303*(i%2)))...) // 200, 503, 200
			}
			cfg := tt.cfg
			cfg.Logger = quiet
			e, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range batch {
				e.Record(s)
			}
			if err := e.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if s := e.Stats(); s.Exported != uint64(len(batch)) {
				t.Fatalf("stats %+v: want %d exported", s, len(batch))
			}
			if _, err := j.WaitForSpans(b.ServiceName(), len(batch), 10*time.Second); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(batch); i += 4 {
				checkHopInJaeger(t, j, batch[i:i+4])
			}
			services, err := j.Services()
			if err != nil {
				t.Fatal(err)
			}
			if !containsAll(services, a.ServiceName(), b.ServiceName()) {
				t.Errorf("services %v lack %s and %s", services, a.ServiceName(), b.ServiceName())
			}
		})
	}
}

// TestJaegerDecodesEveryLengthForm sends what the encoder writes in its less
// common forms: lengths padded to their reserved room (a span under 128 bytes,
// every ResourceSpans), bodies moved up for a longer length (attributes over 127
// bytes, a span over 16 KiB) and repaired UTF-8; Jaeger must read all of it back.
func TestJaegerDecodesEveryLengthForm(t *testing.T) {
	j := jaegertest.Start(t)
	long, huge := strings.Repeat("l", 200), strings.Repeat("h", 20000)
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"grpc", Config{Protocol: ProtocolGRPC, Endpoint: "http://" + j.OTLPGRPCAddr}},
		{"http", Config{Protocol: ProtocolHTTPProtobuf, Endpoint: j.OTLPHTTPURL}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := podResource("length-forms-"+tt.name, "length-forms-1")
			now := time.Now()
			mk := func(name string, attrs ...spans.Attr) *spans.Span {
				return &spans.Span{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Name: name, Kind: spans.KindServer,
					Start: now, End: now.Add(time.Millisecond), Attrs: attrs, Resource: res}
			}
			tiny := mk("tiny")
			big := mk("big", spans.String("long", long), spans.String("huge", huge), spans.Int("n", -1))
			big.Events = []spans.Event{{Name: "ev", Time: now, Attrs: []spans.Attr{spans.String("long", long)}}}
			big.Status, big.StatusMessage = spans.StatusError, long
			bad := mk("bad \xff utf-8", spans.String("url.path", "/caf\xe9"), spans.String("k\xc3", "v"))
			batch := []*spans.Span{tiny, big, bad}

			cfg := tt.cfg
			cfg.Logger = quiet
			e, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range batch {
				e.Record(s)
			}
			if err := e.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if s := e.Stats(); s.Exported != uint64(len(batch)) {
				t.Fatalf("stats %+v: want %d exported", s, len(batch))
			}
			if _, err := j.WaitForSpans(res.ServiceName(), len(batch), 10*time.Second); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				span *spans.Span
				name string
				tags map[string]string
			}{
				{tiny, "tiny", nil},
				{big, "big", map[string]string{"long": long, "huge": huge, "n": "-1"}},
				{bad, "bad \uFFFD utf-8", map[string]string{"url.path": "/caf\uFFFD", "k\uFFFD": "v"}},
			} {
				tr, err := j.Trace(c.span.TraceID.String())
				if err != nil {
					t.Fatal(err)
				}
				got, ok := tr.Span(c.span.SpanID.String())
				if !ok {
					t.Fatalf("span %q missing from its trace", c.name)
				}
				if got.OperationName != c.name {
					t.Errorf("operation %q, want %q", got.OperationName, c.name)
				}
				for k, want := range c.tags {
					if v, _ := got.Tag(k); v != want {
						t.Errorf("%s: tag %q is %d bytes %.20q..., want %d bytes %.20q...", c.name, k, len(v), v, len(want), want)
					}
				}
				if v, _ := tr.Process(got).Tag("k8s.pod.uid"); v != "uid-length-forms-1" {
					t.Errorf("%s: resource k8s.pod.uid %q", c.name, v)
				}
				if c.span == big {
					ev, ok := got.Event("ev")
					if v, _ := ev.Field("long"); !ok || v != long {
						t.Errorf("event attribute long: %d bytes (event found: %t), want %d", len(v), ok, len(long))
					}
					if v, _ := got.Tag("otel.status_description"); v != long {
						t.Errorf("status message: %.20q... (%d bytes), want %d bytes", v, len(v), len(long))
					}
				}
			}
		})
	}
}

func checkHopInJaeger(t *testing.T, j *jaegertest.Jaeger, hop []*spans.Span) {
	t.Helper()
	tr, err := j.Trace(hop[0].TraceID.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Spans) != len(hop) {
		t.Fatalf("trace %s has %d spans, want %d", tr.TraceID, len(tr.Spans), len(hop))
	}
	for _, want := range hop {
		got, ok := tr.Span(want.SpanID.String())
		if !ok {
			t.Fatalf("span %s missing from trace %s", want.SpanID, tr.TraceID)
		}
		leg := attrOf(want.Attrs, "hoptrace.leg")
		if p := got.ParentID(); (p == "") != !want.ParentID.IsValid() || (p != "" && p != want.ParentID.String()) {
			t.Errorf("%s: parent %q, want %q", leg, p, want.ParentID)
		}
		wantKind := map[spans.Kind]string{spans.KindServer: "server", spans.KindClient: "client"}[want.Kind]
		if got.Kind() != wantKind {
			t.Errorf("%s: kind %q, want %q", leg, got.Kind(), wantKind)
		}
		if got.OperationName != want.Name {
			t.Errorf("%s: operation %q, want %q", leg, got.OperationName, want.Name)
		}
		if d := time.Duration(got.Duration) * time.Microsecond; d != want.End.Sub(want.Start).Truncate(time.Microsecond) {
			t.Errorf("%s: duration %v, want %v", leg, d, want.End.Sub(want.Start))
		}
		for _, a := range want.Attrs {
			v, ok := got.Tag(a.Key)
			if !ok || v != attrOf(want.Attrs, a.Key) {
				t.Errorf("%s: tag %s = %q (present %t), want %q", leg, a.Key, v, ok, attrOf(want.Attrs, a.Key))
			}
		}
		for _, kv := range got.Tags {
			if kv.Key == "http.response.status_code" && kv.Type != "int64" {
				t.Errorf("%s: status code tag has type %s, want int64", leg, kv.Type)
			}
		}
		if want.Status == spans.StatusError {
			if v, _ := got.Tag("otel.status_code"); v != "ERROR" {
				t.Errorf("%s: otel.status_code %q, want ERROR", leg, v)
			}
			if v, _ := got.Tag("error"); v != "true" {
				t.Errorf("%s: error tag %q, want true", leg, v)
			}
		}
		wire, ok := got.Event("wire send")
		if !ok {
			t.Errorf("%s: no 'wire send' event in %+v", leg, got.Logs)
		} else if v, _ := wire.Field("bytes"); v != "120" || wire.Timestamp != want.Events[0].Time.UnixMicro() {
			t.Errorf("%s: wire send event %+v", leg, wire)
		}
		if _, ok := got.Event("first response byte"); !ok {
			t.Errorf("%s: no 'first response byte' event", leg)
		}
		proc := tr.Process(got)
		if proc.ServiceName != want.Resource.ServiceName() {
			t.Errorf("%s: service %q, want %q", leg, proc.ServiceName, want.Resource.ServiceName())
		}
		for _, k := range []string{"k8s.pod.name", "k8s.namespace.name", "k8s.node.name", "k8s.pod.uid"} {
			if v, _ := proc.Tag(k); v != attrOf(want.Resource.Attrs, k) {
				t.Errorf("%s: resource %s = %q, want %q", leg, k, v, attrOf(want.Resource.Attrs, k))
			}
		}
	}
}

// TestJaegerStartedLate: the collector is down when the exporter starts and comes
// up 20 s later. What was queued meanwhile arrives, once; what did not fit in the
// queue was dropped and counted.
func TestJaegerStartedLate(t *testing.T) {
	t.Parallel()
	j := jaegertest.New(t) // ports known, process not started
	cfg := Config{
		Endpoint:     "http://" + j.OTLPGRPCAddr,
		Logger:       quiet,
		MaxQueueSize: 2048,
		MaxBatchSize: 512,
		BatchTimeout: 200 * time.Millisecond,
		Timeout:      5 * time.Second,
		Retry:        RetryConfig{InitialInterval: 500 * time.Millisecond, MaxInterval: 2 * time.Second, MaxElapsedTime: 2 * time.Minute},
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	a, b := podResource("late-a", "late-a-1"), podResource("late-b", "late-b-1")
	for _, s := range hops(250, a, b) { // 1000 spans
		e.Record(s)
	}
	waitFor(t, "the first batch in retry", func() bool { return e.Stats().InFlight == cfg.MaxBatchSize })
	for _, s := range hops(1250, a, b) { // 5000 more: the queue takes 1560 of them
		e.Record(s)
	}
	const kept = 2048 + 512
	s := e.Stats()
	if s.Queued != cfg.MaxQueueSize || s.Dropped.QueueFull != 6000-kept || s.Exported != 0 {
		t.Fatalf("while the collector is down: %+v; want a full queue, %d dropped", s, 6000-kept)
	}

	time.Sleep(20*time.Second - time.Since(started))
	if s := e.Stats(); s.Exported != 0 || s.Retries == 0 {
		t.Fatalf("before the collector starts: %+v; want retries and nothing exported", s)
	}
	if err := j.Start(); err != nil {
		t.Fatal(err)
	}
	upAt := time.Now()
	waitFor2(t, 30*time.Second, "all kept spans exported", func() bool { return e.Stats().Exported == kept })
	t.Logf("queued spans delivered %v after the collector came up", time.Since(upAt).Round(time.Millisecond))
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	s = e.Stats()
	checkSettled(t, s)
	if s.Exported != kept || s.Dropped.Total() != 6000-kept {
		t.Errorf("stats %+v: want %d exported, %d dropped", s, kept, 6000-kept)
	}

	// None twice: Jaeger's receiver counted each span once, and the query API has
	// kept-many distinct span ids.
	accepted, err := j.AcceptedSpans()
	if err != nil {
		t.Fatal(err)
	}
	if accepted != kept {
		t.Errorf("Jaeger's OTLP receiver accepted %d spans, want exactly %d", accepted, kept)
	}
	ids := spanIDs(t, j, a.ServiceName(), b.ServiceName())
	if len(ids) != kept {
		t.Errorf("Jaeger holds %d distinct spans, want %d", len(ids), kept)
	}
}

// TestJaegerKilledMidStream: a steady stream of spans while the collector is
// killed (SIGKILL) and restarted on the same ports. The exporter survives, its
// memory stays bounded, and every produced span is accounted for exactly.
func TestJaegerKilledMidStream(t *testing.T) {
	t.Parallel()
	j := jaegertest.Start(t)
	cfg := Config{
		Endpoint:     "http://" + j.OTLPGRPCAddr,
		Logger:       quiet,
		MaxQueueSize: 2048,
		MaxBatchSize: 256,
		BatchTimeout: 100 * time.Millisecond,
		Timeout:      2 * time.Second,
		Retry:        RetryConfig{InitialInterval: 200 * time.Millisecond, MaxInterval: time.Second, MaxElapsedTime: 30 * time.Second},
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	baseLive := liveHeap()

	// The producer: one hop (4 spans) per millisecond, about 4000 spans/s.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	a, b := podResource("steady-a", "steady-a-1"), podResource("steady-b", "steady-b-1")
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				for _, s := range hop(a, b, time.Now(), 200) {
					e.Record(s)
				}
			}
		}
	})
	// The watcher: queue bound, accounting invariant and live heap, all along.
	var maxLive uint64
	var watchErr error
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			s := e.Stats()
			if s.Queued > s.QueueCapacity || s.InFlight > cfg.MaxBatchSize ||
				s.Produced != s.Exported+s.Dropped.Total()+uint64(s.Queued)+uint64(s.InFlight) {
				watchErr = fmt.Errorf("bad snapshot %+v", s)
				return
			}
			maxLive = max(maxLive, liveHeap())
		}
	})

	time.Sleep(3 * time.Second)
	before := e.Stats()
	if err := j.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed Jaeger after %d spans exported", before.Exported)
	time.Sleep(3 * time.Second)
	duringOutage := e.Stats()
	if err := j.Start(); err != nil {
		t.Fatal(err)
	}
	restartedAt := duringOutage.Exported
	time.Sleep(4 * time.Second)
	close(stop)
	wg.Wait()
	if watchErr != nil {
		t.Fatal(watchErr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	s := e.Stats()
	checkSettled(t, s)
	t.Logf("produced %d, exported %d, dropped %+v, retries %d, failed batches %d; live heap max %.1f MiB (base %.1f MiB)",
		s.Produced, s.Exported, s.Dropped, s.Retries, s.FailedBatches, mib(maxLive), mib(baseLive))
	if s.Produced < 10_000 {
		t.Errorf("only %d spans produced: the stream was not steady", s.Produced)
	}
	if before.Exported == 0 || s.Exported <= restartedAt {
		t.Errorf("exported %d before the kill and %d in all (%d at restart): want progress on both sides", before.Exported, s.Exported, restartedAt)
	}
	if s.Retries == 0 || s.Dropped.QueueFull == 0 {
		t.Errorf("stats %+v: a 3 s outage at 4000 spans/s must cause retries and queue_full drops", s)
	}
	// The queue holds at most 2048+256 spans of about 1.5 KiB: a few MiB. A leak of
	// everything produced during the outage alone would be over 15 MiB.
	if grown := int64(maxLive) - int64(baseLive); grown > 12<<20 {
		t.Errorf("live heap grew by %.1f MiB during the test", mib(uint64(grown)))
	}
	accepted, err := j.AcceptedSpans()
	if err != nil {
		t.Fatal(err)
	}
	if accepted == 0 || uint64(accepted) > s.Exported {
		t.Errorf("the restarted Jaeger accepted %d spans, exporter exported %d in all", accepted, s.Exported)
	}
}

// waitFor2 is waitFor with a longer deadline.
func waitFor2(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// spanIDs returns the distinct span ids Jaeger holds for the services.
func spanIDs(t *testing.T, j *jaegertest.Jaeger, services ...string) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for _, svc := range services {
		traces, err := j.Traces(svc)
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range traces {
			for _, s := range tr.Spans {
				ids[s.SpanID] = true
			}
		}
	}
	return ids
}

func liveHeap() uint64 {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func attrOf(attrs []spans.Attr, key string) string {
	for _, a := range attrs {
		if a.Key == key {
			switch a.Type {
			case spans.AttrInt:
				return fmt.Sprint(a.Int)
			case spans.AttrBool:
				return fmt.Sprint(a.Bool)
			case spans.AttrFloat:
				return fmt.Sprint(a.Float)
			}
			return a.Str
		}
	}
	return ""
}

func containsAll(list []string, want ...string) bool {
	have := strings.Join(list, "\n") + "\n"
	for _, w := range want {
		if !strings.Contains(have, w+"\n") {
			return false
		}
	}
	return true
}
