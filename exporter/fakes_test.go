package exporter

import (
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // the fake collector takes gzip, as collectors do
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// received is one request a fake collector got.
type received struct {
	at      time.Time
	spans   int
	headers map[string]string // lower-case names
}

type recorder struct {
	mu   sync.Mutex
	reqs []received
}

func (r *recorder) add(req received) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req)
	return len(r.reqs)
}

func (r *recorder) got() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.reqs...)
}

func countSpans(req *coltracepb.ExportTraceServiceRequest) int {
	n := 0
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			n += len(ss.Spans)
		}
	}
	return n
}

// fakeGRPC is an OTLP/gRPC collector on a loopback port whose answer to the n-th
// request (1-based) is scripted by answer.
type fakeGRPC struct {
	coltracepb.UnimplementedTraceServiceServer
	recorder
	answer func(call int) (*coltracepb.ExportTraceServiceResponse, error)
	addr   string
	conns  atomic.Int32 // connections accepted
}

// startFakeGRPC starts a fake collector; opts are the gRPC server's.
func startFakeGRPC(t *testing.T, answer func(call int) (*coltracepb.ExportTraceServiceResponse, error), opts ...grpc.ServerOption) *fakeGRPC {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeGRPC{answer: answer, addr: l.Addr().String()}
	srv := grpc.NewServer(opts...)
	coltracepb.RegisterTraceServiceServer(srv, f)
	go srv.Serve(countingListener{l, &f.conns})
	t.Cleanup(srv.Stop)
	return f
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func (f *fakeGRPC) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	h := map[string]string{}
	for k, v := range md {
		h[k] = v[0]
	}
	// gRPC hides grpc-encoding from the metadata; the transport stream knows it.
	if rc, ok := grpc.ServerTransportStreamFromContext(ctx).(interface{ RecvCompress() string }); ok {
		h["grpc-encoding"] = rc.RecvCompress()
	}
	call := f.add(received{at: time.Now(), spans: countSpans(req), headers: h})
	if f.answer == nil {
		return &coltracepb.ExportTraceServiceResponse{}, nil
	}
	return f.answer(call)
}

// httpAnswer is a scripted OTLP/HTTP response.
type httpAnswer struct {
	status int
	header map[string]string
	body   proto.Message
}

// fakeHTTP is an OTLP/HTTP collector on a loopback port.
type fakeHTTP struct {
	recorder
	url string
}

func startFakeHTTP(t *testing.T, answer func(call int) httpAnswer) *fakeHTTP {
	t.Helper()
	f := &fakeHTTP{}
	srv := httptest.NewServer(f.handler(answer))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *fakeHTTP) handler(answer func(call int) httpAnswer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		raw, err := io.ReadAll(body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(raw, &req)
		}
		if err != nil || r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
			http.Error(w, "bad export request", http.StatusBadRequest)
			return
		}
		h := map[string]string{}
		for k := range r.Header {
			h[http.CanonicalHeaderKey(k)] = r.Header.Get(k)
		}
		call := f.add(received{at: time.Now(), spans: countSpans(&req), headers: h})
		a := httpAnswer{status: http.StatusOK}
		if answer != nil {
			a = answer(call)
		}
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(a.status)
		if a.body != nil {
			b, _ := proto.Marshal(a.body)
			w.Write(b)
		}
	})
}

// logCapture is a slog handler that keeps records, to count log lines.
type logCapture struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCapture) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r)
	return nil
}
func (l *logCapture) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCapture) WithGroup(string) slog.Handler      { return l }

func (l *logCapture) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.records {
		if r.Message == msg {
			n++
		}
	}
	return n
}
