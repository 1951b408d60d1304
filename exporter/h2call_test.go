package exporter

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/hoptrace/hoptrace/spans"
)

// grpcExporter is an exporter to f that sends what it is given at once
// (Flush), retrying quickly.
func grpcExporter(t *testing.T, f *fakeGRPC, config ...func(*Config)) *Exporter {
	t.Helper()
	cfg := testConfig()
	cfg.Endpoint = "http://" + f.addr
	cfg.BatchTimeout = time.Hour
	for _, c := range config {
		c(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Shutdown(context.Background()) })
	return e
}

func exportHops(t *testing.T, e *Exporter, n int) {
	t.Helper()
	for _, s := range hops(n, podResource("a", "a-1"), podResource("b", "b-1")) {
		e.Record(s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func totalSpans(f *fakeGRPC) int {
	n := 0
	for _, r := range f.got() {
		n += r.spans
	}
	return n
}

// Batches after the first ride the same connection.
func TestGRPCReusesConnection(t *testing.T) {
	f := startFakeGRPC(t, nil)
	e := grpcExporter(t, f)
	for range 5 {
		exportHops(t, e, 10)
	}
	if st := e.Stats(); st.Exported != 200 || st.Retries != 0 {
		t.Fatalf("stats %+v: want 200 exported, no retries", st)
	}
	if n := f.conns.Load(); n != 1 {
		t.Errorf("%d connections for 5 batches, want 1", n)
	}
}

// A collector that closes idle connections (GOAWAY, then close) or ages them
// out costs no failed attempt: the next batch finds out before it is sent and
// goes on a new connection.
func TestGRPCConnectionClosedByCollector(t *testing.T) {
	for _, tt := range []struct {
		name string
		kp   keepalive.ServerParameters
	}{
		{"idle", keepalive.ServerParameters{MaxConnectionIdle: 50 * time.Millisecond}},
		{"age", keepalive.ServerParameters{MaxConnectionAge: 50 * time.Millisecond, MaxConnectionAgeGrace: 50 * time.Millisecond}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := startFakeGRPC(t, nil, grpc.KeepaliveParams(tt.kp))
			e := grpcExporter(t, f)
			for range 4 {
				exportHops(t, e, 5)
				time.Sleep(300 * time.Millisecond) // past idle or age and its grace
			}
			if st := e.Stats(); st.Exported != 80 || st.Retries != 0 || st.FailedBatches != 0 {
				t.Fatalf("stats %+v: want 80 exported, no retries or failures", st)
			}
			if got := totalSpans(f); got != 80 {
				t.Errorf("collector got %d spans, want 80", got)
			}
			if n := f.conns.Load(); n < 2 {
				t.Errorf("%d connections: the collector's closes were not seen", n)
			}
		})
	}
}

// A batch larger than the collector's flow-control windows (fixed at the
// protocol's 64 KiB, no dynamic growth) waits for WINDOW_UPDATEs and arrives
// whole.
func TestGRPCSmallFlowControlWindows(t *testing.T) {
	f := startFakeGRPC(t, nil, grpc.InitialWindowSize(65535), grpc.InitialConnWindowSize(65535))
	e := grpcExporter(t, f, func(c *Config) { c.MaxQueueSize, c.MaxBatchSize = 4096, 4096 })
	exportHops(t, e, 1000) // 4,000 spans, about 1.5 MB in one request
	if st := e.Stats(); st.Exported != 4000 || st.Retries != 0 {
		t.Fatalf("stats %+v: want 4000 exported, no retries", st)
	}
	if got := f.got(); len(got) != 1 || got[0].spans != 4000 {
		t.Errorf("collector got %+v, want one request of 4000 spans", got)
	}
}

// Something that is not an HTTP/2 server fails the attempt with an error
// that says so, and the batch is retried, not lost silently.
func TestGRPCNotHTTP2(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
				time.Sleep(50 * time.Millisecond)
				c.Close()
			}()
		}
	}()
	cfg := testConfig()
	cfg.Endpoint = "http://" + l.Addr().String()
	cfg.Retry.MaxElapsedTime = 100 * time.Millisecond
	s, err := newGRPCSender(cfg, mustTarget(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	var enc encoder
	p := encodePayload(&enc, []*spans.Span{named("x")})
	defer p.free()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = s.send(ctx, p)
	if err == nil {
		t.Fatal("an HTTP/1 server accepted the export")
	}
	if retryable, _ := classify(err); !retryable {
		t.Errorf("%v: not retryable", err)
	}
	if ctx.Err() != nil {
		t.Errorf("the attempt ran to its deadline: %v", err)
	}
	t.Log(err)
}

func mustTarget(t *testing.T, cfg Config) target {
	t.Helper()
	tg, err := cfg.withDefaults().target()
	if err != nil {
		t.Fatal(err)
	}
	return tg
}
