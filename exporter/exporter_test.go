package exporter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/hoptrace/hoptrace/spans"
)

// fakeSender records what it is asked to send and answers with respond.
type fakeSender struct {
	mu      sync.Mutex
	batches [][]string // span names per call
	respond func(ctx context.Context, call int) (partialSuccess, error)
	closed  atomic.Bool
}

func (f *fakeSender) send(ctx context.Context, p *payload) (partialSuccess, error) {
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(p.bytes(), &req); err != nil {
		return partialSuccess{}, err
	}
	var names []string
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				names = append(names, s.Name)
			}
		}
	}
	f.mu.Lock()
	f.batches = append(f.batches, names)
	call := len(f.batches)
	f.mu.Unlock()
	if f.respond == nil {
		return partialSuccess{}, nil
	}
	return f.respond(ctx, call)
}

func (f *fakeSender) close() error { f.closed.Store(true); return nil }

func (f *fakeSender) sent() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.batches...)
}

func testConfig() Config {
	c := DefaultConfig()
	c.Logger = quiet
	c.Retry.InitialInterval = 5 * time.Millisecond
	c.Retry.MaxInterval = 20 * time.Millisecond
	return c.withDefaults()
}

func named(name string) *spans.Span {
	return &spans.Span{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Name: name}
}

// waitFor polls cond until it holds or fails the test after a few seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkSettled asserts the invariant that must hold once Shutdown has returned.
func checkSettled(t *testing.T, s Stats) {
	t.Helper()
	if s.Queued != 0 || s.InFlight != 0 {
		t.Errorf("after shutdown: queued %d, in flight %d; want 0", s.Queued, s.InFlight)
	}
	if s.Produced != s.Exported+s.Dropped.Total() {
		t.Errorf("produced %d != exported %d + dropped %d (%+v)", s.Produced, s.Exported, s.Dropped.Total(), s.Dropped)
	}
}

func TestQueueFullDropsNewest(t *testing.T) {
	release := make(chan struct{})
	f := &fakeSender{respond: func(ctx context.Context, call int) (partialSuccess, error) {
		if call == 1 {
			<-release
		}
		return partialSuccess{}, nil
	}}
	cfg := testConfig()
	cfg.MaxQueueSize, cfg.MaxBatchSize, cfg.BatchTimeout = 8, 4, time.Hour
	e := newExporter(cfg, f)

	for i := range 4 {
		e.Record(named(fmt.Sprint(i)))
	}
	waitFor(t, "first batch in flight", func() bool { return e.Stats().InFlight == 4 })
	for i := 4; i < 24; i++ {
		e.Record(named(fmt.Sprint(i)))
	}
	s := e.Stats()
	if s.Queued != 8 || s.Dropped.QueueFull != 12 || s.Produced != 24 {
		t.Fatalf("with the worker stuck: %+v; want 8 queued, 12 dropped, 24 produced", s)
	}
	close(release)
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range f.sent() {
		got = append(got, b...)
	}
	want := []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("exported %v, want the oldest spans %v", got, want)
	}
	s = e.Stats()
	checkSettled(t, s)
	if s.Exported != 12 || s.Dropped.QueueFull != 12 {
		t.Errorf("stats %+v: want 12 exported, 12 dropped for queue_full", s)
	}
}

func TestRecordNeverBlocksOnStuckCollector(t *testing.T) {
	f := &fakeSender{respond: func(ctx context.Context, _ int) (partialSuccess, error) {
		<-ctx.Done() // a collector that never answers
		return partialSuccess{}, &exportError{err: ctx.Err(), retryable: true}
	}}
	cfg := testConfig()
	cfg.Timeout = time.Hour
	e := newExporter(cfg, f)

	const n = 200_000
	s := named("x")
	for range cfg.MaxBatchSize {
		e.Record(s)
	}
	waitFor(t, "a batch stuck in flight", func() bool { return e.Stats().InFlight == cfg.MaxBatchSize })
	done := make(chan struct{})
	go func() {
		for range n - cfg.MaxBatchSize {
			e.Record(s)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Record blocked behind a stuck collector")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := e.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want an error wrapping DeadlineExceeded", err)
	}
	st := e.Stats()
	checkSettled(t, st)
	if st.Exported != 0 || st.Dropped.Shutdown != uint64(cfg.MaxQueueSize+cfg.MaxBatchSize) || st.Produced != n {
		t.Errorf("stats %+v: want queue+batch dropped at shutdown, rest queue_full", st)
	}
	if !f.closed.Load() {
		t.Error("Shutdown did not close the transport")
	}
}

func TestBatchesBySizeThenDelay(t *testing.T) {
	f := &fakeSender{}
	cfg := testConfig()
	cfg.MaxBatchSize, cfg.BatchTimeout = 10, 500*time.Millisecond
	e := newExporter(cfg, f)
	defer e.Shutdown(context.Background())

	start := time.Now()
	for i := range 25 {
		e.Record(named(fmt.Sprint(i)))
	}
	waitFor(t, "two full batches", func() bool { return len(f.sent()) >= 2 })
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Errorf("full batches took %v: they must not wait for the delay", d)
	}
	waitFor(t, "the partial batch", func() bool { return len(f.sent()) == 3 })
	if d := time.Since(start); d < 490*time.Millisecond {
		t.Errorf("partial batch sent after %v, before the batch delay", d)
	}
	var sizes []int
	for _, b := range f.sent() {
		sizes = append(sizes, len(b))
	}
	if fmt.Sprint(sizes) != "[10 10 5]" {
		t.Errorf("batch sizes %v, want [10 10 5]", sizes)
	}
}

func TestShutdownFlushesQueue(t *testing.T) {
	f := &fakeSender{}
	cfg := testConfig()
	cfg.MaxBatchSize, cfg.BatchTimeout = 100, time.Hour
	e := newExporter(cfg, f)
	for range 1050 {
		e.Record(named("x"))
	}
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := e.Stats()
	checkSettled(t, s)
	if s.Exported != 1050 {
		t.Errorf("exported %d, want all 1050 queued at shutdown", s.Exported)
	}
	e.Record(named("late"))
	s = e.Stats()
	if s.Dropped.Shutdown != 1 || s.Produced != 1051 {
		t.Errorf("a span recorded after shutdown: %+v, want one shutdown drop", s)
	}
	if err := e.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown = %v", err)
	}
	if err := e.Flush(context.Background()); !errors.Is(err, ErrShutdown) {
		t.Errorf("Flush after Shutdown = %v, want ErrShutdown", err)
	}
}

func TestShutdownAbandonsBackoffAtDeadline(t *testing.T) {
	f := &fakeSender{respond: func(context.Context, int) (partialSuccess, error) {
		return partialSuccess{}, &exportError{err: errors.New("unavailable"), retryable: true}
	}}
	cfg := testConfig()
	cfg.Retry.InitialInterval, cfg.Retry.MaxInterval, cfg.Retry.MaxElapsedTime = time.Hour, time.Hour, 2*time.Hour
	cfg.MaxBatchSize = 5
	e := newExporter(cfg, f)
	for range 12 {
		e.Record(named("x"))
	}
	waitFor(t, "a batch in backoff", func() bool { return e.Stats().Retries == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := e.Shutdown(ctx)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown took %v with a 50ms deadline", d)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
	}
	s := e.Stats()
	checkSettled(t, s)
	if s.Dropped.Shutdown != 12 {
		t.Errorf("stats %+v: want all 12 dropped at shutdown", s)
	}
}

func TestFlush(t *testing.T) {
	f := &fakeSender{}
	cfg := testConfig()
	cfg.BatchTimeout = time.Hour
	e := newExporter(cfg, f)
	defer e.Shutdown(context.Background())
	for range 3 {
		e.Record(named("x"))
	}
	if err := e.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := e.Stats(); s.Exported != 3 {
		t.Errorf("after Flush: %+v, want 3 exported", s)
	}
}

func TestRecordNil(t *testing.T) {
	e := newExporter(testConfig(), &fakeSender{})
	e.Record(nil)
	e.Shutdown(context.Background())
	if s := e.Stats(); s.Produced != 0 {
		t.Errorf("Record(nil) counted: %+v", s)
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	cfg := testConfig()
	cfg.MaxQueueSize, cfg.BatchTimeout = 1<<20, time.Hour
	cfg.MaxBatchSize = 1 << 20 // never wake the worker during the measurement
	e := newExporter(cfg, &fakeSender{})
	defer e.Shutdown(context.Background())
	s := named("x")
	if allocs := testing.AllocsPerRun(1000, func() { e.Record(s) }); allocs != 0 {
		t.Errorf("Record allocates %.1f times per span", allocs)
	}
}

// Many producers against a collector that fails now and then: the accounting
// invariant holds in every snapshot, and exactly once everything has settled.
func TestAccountingUnderConcurrency(t *testing.T) {
	f := &fakeSender{respond: func(_ context.Context, call int) (partialSuccess, error) {
		switch call % 7 {
		case 1:
			return partialSuccess{}, &exportError{err: errors.New("bad request")}
		case 2:
			return partialSuccess{}, &exportError{err: errors.New("unavailable"), retryable: true}
		case 3:
			return partialSuccess{rejected: 2, message: "2 spans too old"}, nil
		}
		return partialSuccess{}, nil
	}}
	cfg := testConfig()
	cfg.MaxQueueSize, cfg.MaxBatchSize, cfg.BatchTimeout = 256, 32, time.Millisecond
	e := newExporter(cfg, f)

	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			s := e.Stats()
			if s.Produced != s.Exported+s.Dropped.Total()+uint64(s.Queued)+uint64(s.InFlight) {
				t.Errorf("inconsistent snapshot: %+v", s)
				return
			}
		}
	}()
	for range 8 {
		wg.Go(func() {
			for range 20_000 {
				e.Record(named("x"))
			}
		})
	}
	wg.Wait()
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(stop)
	s := e.Stats()
	checkSettled(t, s)
	if s.Produced != 160_000 {
		t.Errorf("produced %d, want 160000", s.Produced)
	}
	if s.Dropped.NonRetryable == 0 || s.Dropped.Rejected == 0 || s.Retries == 0 {
		t.Errorf("stats %+v: the scripted failures did not all happen", s)
	}
}
