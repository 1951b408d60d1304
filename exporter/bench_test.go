//go:build unix

package exporter

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/hoptrace/hoptrace/spans"
)

// discardCodec is the in-process receiver's codec: it accepts any request without
// decoding it and answers an empty ExportTraceServiceResponse (zero bytes), so
// the benchmark measures the exporter, not a collector.
type discardCodec struct{}

type discarded struct{ bytes int }

func (discardCodec) Marshal(any) (mem.BufferSlice, error) { return nil, nil }
func (discardCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*discarded).bytes = data.Len()
	return nil
}
func (discardCodec) Name() string { return "proto" }

var _ encoding.CodecV2 = discardCodec{}

// startDiscardGRPC serves OTLP/gRPC's Export method on a loopback port and throws
// the requests away.
func startDiscardGRPC(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(discardCodec{}))
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Export",
			Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				var m discarded
				if err := dec(&m); err != nil {
					return nil, err
				}
				return &m, nil
			},
		}},
	}, struct{}{})
	go srv.Serve(l)
	tb.Cleanup(srv.Stop)
	return l.Addr().String()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkExportGRPC is the whole path: Record, batching, conversion, gRPC to an
// in-process receiver. One op is one span; spans/cpu-s is spans per second of
// CPU consumed by the process (exporter, gRPC client and the discarding server),
// i.e. spans per second per core. The producer waits when the queue is three
// quarters full, so nothing is dropped and every span is really exported.
func BenchmarkExportGRPC(b *testing.B) {
	for _, tt := range []struct {
		name        string
		compression string
	}{{"none", CompressionNone}, {"gzip", CompressionGzip}} {
		b.Run(tt.name, func(b *testing.B) {
			addr := startDiscardGRPC(b)
			cfg := Config{
				Endpoint:     "http://" + addr,
				Compression:  tt.compression,
				Logger:       quiet,
				MaxQueueSize: 8192,
				MaxBatchSize: 512,
				BatchTimeout: 10 * time.Millisecond,
			}
			e, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			pool := hops(1024, podResource("a", "a-1"), podResource("b", "b-1"))
			high := cfg.MaxQueueSize * 3 / 4

			b.ReportAllocs()
			cpu0, wall0 := cpuTime(), time.Now()
			b.ResetTimer()
			for i := range b.N {
				if i%256 == 0 {
					for e.q.len() > high {
						time.Sleep(50 * time.Microsecond)
					}
				}
				e.Record(pool[i%len(pool)])
			}
			if err := e.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			cpu, wall := cpuTime()-cpu0, time.Since(wall0)
			b.ReportMetric(float64(b.N)/cpu.Seconds(), "spans/cpu-s")
			b.ReportMetric(float64(b.N)/wall.Seconds(), "spans/s")
			if err := e.Shutdown(context.Background()); err != nil {
				b.Fatal(err)
			}
			if s := e.Stats(); s.Exported != uint64(b.N) {
				b.Fatalf("stats %+v: want all %d spans exported", s, b.N)
			}
		})
	}
}

// BenchmarkRecord is the proxy's cost per span: Record from parallel goroutines,
// with the worker exporting to a no-op transport.
func BenchmarkRecord(b *testing.B) {
	cfg := testConfig()
	cfg.MaxQueueSize = 1 << 16
	e := newExporter(cfg, &fakeSender{respond: func(context.Context, int) (partialSuccess, error) { return partialSuccess{}, nil }})
	defer e.Shutdown(context.Background())
	s := &spans.Span{Name: "x"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e.Record(s)
		}
	})
}

// BenchmarkEncode is the worker's CPU per span: encoding a 512-span batch of
// realistic spans (7 attributes, 2 events, pod resources) to OTLP wire format.
// One op is one span.
func BenchmarkEncode(b *testing.B) {
	batch := hops(128, podResource("a", "a-1"), podResource("b", "b-1"))
	// strings checked for UTF-8 one by one, or promised ASCII by their maker
	// (spans.Span.ASCII), as the proxy does for most requests.
	for _, ascii := range []bool{false, true} {
		name := "checked"
		if ascii {
			name = "ascii"
		}
		b.Run(name, func(b *testing.B) {
			for _, s := range batch {
				s.ASCII = ascii
			}
			var enc encoder
			var buf []byte
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += len(batch) {
				buf = enc.encode(buf[:0], batch)
				enc.release()
			}
			b.ReportMetric(float64(len(buf))/float64(len(batch)), "bytes/span")
		})
	}
}

// BenchmarkProtoMarshal is the alternative the encoder replaced, for comparison:
// building the go.opentelemetry.io/proto/otlp messages and marshalling them.
func BenchmarkProtoMarshal(b *testing.B) {
	batch := hops(128, podResource("a", "a-1"), podResource("b", "b-1"))
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch) {
		var err error
		req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: toResourceSpans(batch)}
		buf, err = proto.MarshalOptions{}.MarshalAppend(buf[:0], req)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(buf))/float64(len(batch)), "bytes/span")
}
