package exporter

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/hoptrace/hoptrace/spans"
)

// exportAll sends batch through a new exporter and returns its settled stats.
func exportAll(t *testing.T, cfg Config, batch []*spans.Span) Stats {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range batch {
		e.Record(s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	s := e.Stats()
	checkSettled(t, s)
	return s
}

func fastRetry(cfg Config) Config {
	cfg.Logger = quiet
	cfg.Retry = RetryConfig{InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond, MaxElapsedTime: 10 * time.Second}
	cfg.BatchTimeout = time.Hour // only Shutdown sends: one batch per test
	return cfg
}

func TestHTTPRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		name       string
		retryAfter func() string
		minGap     time.Duration
	}{
		{"seconds", func() string { return "1" }, time.Second},
		// HTTP-dates have 1 s resolution: 2 s ahead means at least 1 s from now.
		{"http-date", func() string { return time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat) }, time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := startFakeHTTP(t, func(call int) httpAnswer {
				if call == 1 {
					return httpAnswer{status: http.StatusTooManyRequests, header: map[string]string{"Retry-After": tt.retryAfter()}}
				}
				return httpAnswer{status: http.StatusOK}
			})
			cfg := fastRetry(Config{Protocol: ProtocolHTTPProtobuf, Endpoint: f.url})
			s := exportAll(t, cfg, hops(5, podResource("a", "a-1"), podResource("b", "b-1")))
			reqs := f.got()
			if len(reqs) != 2 {
				t.Fatalf("%d requests, want 2", len(reqs))
			}
			if gap := reqs[1].at.Sub(reqs[0].at); gap < tt.minGap {
				t.Errorf("retried after %v, before Retry-After (%v)", gap, tt.minGap)
			}
			if s.Exported != 20 || s.Retries != 1 || s.Dropped.Total() != 0 {
				t.Errorf("stats %+v: want 20 exported after 1 retry", s)
			}
		})
	}
}

func TestHTTPStatusHandling(t *testing.T) {
	for _, tt := range []struct {
		status    int
		retryable bool
	}{
		{http.StatusServiceUnavailable, true},
		{http.StatusBadGateway, true},
		{http.StatusGatewayTimeout, true},
		{http.StatusTooManyRequests, true}, // without Retry-After: plain backoff
		{http.StatusBadRequest, false},
		{http.StatusUnauthorized, false},
		{http.StatusForbidden, false},
		{http.StatusNotFound, false},
		{http.StatusRequestEntityTooLarge, false},
		{http.StatusInternalServerError, false},
	} {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			f := startFakeHTTP(t, func(call int) httpAnswer {
				if call == 1 {
					return httpAnswer{status: tt.status, body: status.New(codes.Unknown, "scripted failure").Proto()}
				}
				return httpAnswer{status: http.StatusOK}
			})
			s := exportAll(t, fastRetry(Config{Protocol: ProtocolHTTPProtobuf, Endpoint: f.url}), hops(2, podResource("a", "a-1"), podResource("b", "b-1")))
			n := len(f.got())
			if tt.retryable {
				if n != 2 || s.Exported != 8 || s.Retries != 1 {
					t.Errorf("%d requests, stats %+v: want a retry and 8 exported", n, s)
				}
				return
			}
			if n != 1 || s.Dropped.NonRetryable != 8 || s.FailedBatches != 1 || s.Retries != 0 {
				t.Errorf("%d requests, stats %+v: want no retry and 8 dropped as non-retryable", n, s)
			}
		})
	}
}

func TestHTTPRetriesExhausted(t *testing.T) {
	f := startFakeHTTP(t, func(int) httpAnswer { return httpAnswer{status: http.StatusServiceUnavailable} })
	cfg := fastRetry(Config{Protocol: ProtocolHTTPProtobuf, Endpoint: f.url})
	cfg.Retry.MaxElapsedTime = 300 * time.Millisecond
	start := time.Now()
	s := exportAll(t, cfg, hops(1, podResource("a", "a-1"), podResource("b", "b-1")))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("gave up after %v, max elapsed time is 300ms", d)
	}
	if s.Dropped.RetriesExhausted != 4 || s.FailedBatches != 1 || s.Retries < 3 || len(f.got()) != int(s.Retries)+1 {
		t.Errorf("stats %+v after %d requests: want 4 spans dropped for retries_exhausted after several retries", s, len(f.got()))
	}
}

// A Retry-After beyond the maximum elapsed time means giving up now, not sleeping.
func TestRetryAfterBeyondMaxElapsed(t *testing.T) {
	f := startFakeHTTP(t, func(int) httpAnswer {
		return httpAnswer{status: http.StatusTooManyRequests, header: map[string]string{"Retry-After": "3600"}}
	})
	start := time.Now()
	s := exportAll(t, fastRetry(Config{Protocol: ProtocolHTTPProtobuf, Endpoint: f.url}), hops(1, podResource("a", "a-1"), podResource("b", "b-1")))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
	if s.Dropped.RetriesExhausted != 4 || len(f.got()) != 1 {
		t.Errorf("stats %+v after %d requests: want one attempt, then retries_exhausted", s, len(f.got()))
	}
}

func TestHTTPCollectorDownIsRetried(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens: connection refused
	cfg := fastRetry(Config{Protocol: ProtocolHTTPProtobuf, Endpoint: "http://" + addr})
	cfg.Retry.MaxElapsedTime = 200 * time.Millisecond
	s := exportAll(t, cfg, hops(1, podResource("a", "a-1"), podResource("b", "b-1")))
	if s.Retries == 0 || s.Dropped.RetriesExhausted != 4 {
		t.Errorf("stats %+v: a refused connection must be retried, then exhausted", s)
	}
}

func TestPartialSuccessCountedAndLoggedOnce(t *testing.T) {
	partial := &coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{
		RejectedSpans: 3, ErrorMessage: "3 spans have an end before their start",
	}}
	t.Run("http", func(t *testing.T) {
		f := startFakeHTTP(t, func(int) httpAnswer { return httpAnswer{status: http.StatusOK, body: partial} })
		testPartialSuccess(t, Config{Protocol: ProtocolHTTPProtobuf, Endpoint: f.url})
	})
	t.Run("grpc", func(t *testing.T) {
		f := startFakeGRPC(t, func(int) (*coltracepb.ExportTraceServiceResponse, error) { return partial, nil })
		testPartialSuccess(t, Config{Endpoint: "http://" + f.addr})
	})
}

func testPartialSuccess(t *testing.T, cfg Config) {
	cfg = fastRetry(cfg)
	logs := &logCapture{}
	cfg.Logger = slog.New(logs)
	cfg.MaxBatchSize = 8
	s := exportAll(t, cfg, hops(4, podResource("a", "a-1"), podResource("b", "b-1"))) // 2 batches
	if s.Exported != 10 || s.Dropped.Rejected != 6 || s.Retries != 0 {
		t.Errorf("stats %+v: want 10 exported, 6 rejected, no retry", s)
	}
	if n := logs.count("collector rejected spans"); n != 2 {
		t.Errorf("logged the partial success %d times for 2 batches, want once per batch", n)
	}
}

func TestGRPCStatusHandling(t *testing.T) {
	retryInfo := func(d time.Duration) error {
		st, err := status.New(codes.ResourceExhausted, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	for _, tt := range []struct {
		name      string
		err       error
		retryable bool
		minGap    time.Duration
	}{
		{"cancelled", status.Error(codes.Canceled, "x"), true, 0},
		{"deadline exceeded", status.Error(codes.DeadlineExceeded, "x"), true, 0},
		{"aborted", status.Error(codes.Aborted, "x"), true, 0},
		{"out of range", status.Error(codes.OutOfRange, "x"), true, 0},
		{"unavailable", status.Error(codes.Unavailable, "x"), true, 0},
		{"data loss", status.Error(codes.DataLoss, "x"), true, 0},
		{"resource exhausted with retry info", retryInfo(time.Second), true, time.Second},
		{"resource exhausted without retry info", status.Error(codes.ResourceExhausted, "message too large"), false, 0},
		{"invalid argument", status.Error(codes.InvalidArgument, "x"), false, 0},
		{"unauthenticated", status.Error(codes.Unauthenticated, "x"), false, 0},
		{"permission denied", status.Error(codes.PermissionDenied, "x"), false, 0},
		{"unimplemented", status.Error(codes.Unimplemented, "x"), false, 0},
		{"internal", status.Error(codes.Internal, "x"), false, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := startFakeGRPC(t, func(call int) (*coltracepb.ExportTraceServiceResponse, error) {
				if call == 1 {
					return nil, tt.err
				}
				return &coltracepb.ExportTraceServiceResponse{}, nil
			})
			s := exportAll(t, fastRetry(Config{Endpoint: "http://" + f.addr}), hops(2, podResource("a", "a-1"), podResource("b", "b-1")))
			reqs := f.got()
			if !tt.retryable {
				if len(reqs) != 1 || s.Dropped.NonRetryable != 8 || s.Retries != 0 {
					t.Errorf("%d requests, stats %+v: want no retry, 8 non-retryable drops", len(reqs), s)
				}
				return
			}
			if len(reqs) != 2 || s.Exported != 8 || s.Retries != 1 {
				t.Fatalf("%d requests, stats %+v: want one retry, 8 exported", len(reqs), s)
			}
			if gap := reqs[1].at.Sub(reqs[0].at); gap < tt.minGap {
				t.Errorf("retried after %v, RetryInfo said %v", gap, tt.minGap)
			}
		})
	}
}

func TestHeadersAndCompression(t *testing.T) {
	headers := map[string]string{"Authorization": "Bearer t0ken", "X-Scope-OrgID": "tenant-1"}
	for _, compression := range []string{CompressionNone, CompressionGzip} {
		t.Run("http "+compression, func(t *testing.T) {
			f := startFakeHTTP(t, nil)
			cfg := fastRetry(Config{Protocol: ProtocolHTTPProtobuf, Endpoint: f.url, Headers: headers, Compression: compression})
			s := exportAll(t, cfg, hops(3, podResource("a", "a-1"), podResource("b", "b-1")))
			reqs := f.got()
			if len(reqs) != 1 || reqs[0].spans != 12 || s.Exported != 12 {
				t.Fatalf("requests %+v, stats %+v: want one request with 12 spans", reqs, s)
			}
			h := reqs[0].headers
			if h["Authorization"] != "Bearer t0ken" || h["X-Scope-Orgid"] != "tenant-1" || h["Content-Type"] != "application/x-protobuf" {
				t.Errorf("headers %v", h)
			}
			if (h["Content-Encoding"] == "gzip") != (compression == CompressionGzip) {
				t.Errorf("Content-Encoding %q with compression %s", h["Content-Encoding"], compression)
			}
		})
		t.Run("grpc "+compression, func(t *testing.T) {
			f := startFakeGRPC(t, nil)
			cfg := fastRetry(Config{Endpoint: "http://" + f.addr, Headers: headers, Compression: compression})
			s := exportAll(t, cfg, hops(3, podResource("a", "a-1"), podResource("b", "b-1")))
			reqs := f.got()
			if len(reqs) != 1 || reqs[0].spans != 12 || s.Exported != 12 {
				t.Fatalf("requests %+v, stats %+v: want one request with 12 spans", reqs, s)
			}
			h := reqs[0].headers
			if h["authorization"] != "Bearer t0ken" || h["x-scope-orgid"] != "tenant-1" {
				t.Errorf("metadata %v", h)
			}
			if enc := h["grpc-encoding"]; (enc == "gzip") != (compression == CompressionGzip) {
				t.Errorf("grpc-encoding %q with compression %s", enc, compression)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		" 2 ":                           2 * time.Second,
		"0":                             0,
		"-3":                            0,
		"soon":                          0,
		"Fri, 02 Jan 2026 03:04:15 GMT": 10 * time.Second,
		"Fri, 02 Jan 2026 03:04:00 GMT": 0, // in the past
		"999999999":                     24 * time.Hour,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestBackoffGrowsWithJitterUpToMax(t *testing.T) {
	b := newBackoff(RetryConfig{InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second})
	b.rand = func() float64 { return 0.5 } // no jitter: the middle of the range
	var got []time.Duration
	for range 8 {
		got = append(got, b.next())
	}
	want := []time.Duration{100, 150, 225, 337, 506, 759, 1000, 1000}
	for i := range want {
		if d := got[i] - want[i]*time.Millisecond; d < -time.Millisecond || d > time.Millisecond {
			t.Fatalf("backoff %v, want ≈%v ms", got, want)
		}
	}
	b = newBackoff(RetryConfig{InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second})
	b.rand = func() float64 { return 0 }
	if d := b.next(); d != 50*time.Millisecond {
		t.Errorf("lowest jitter gives %v, want 50ms", d)
	}
}
