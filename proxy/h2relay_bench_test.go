package proxy

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/hoptrace/hoptrace/spans"
)

// gRPC unary calls over one kept-alive connection: DirectGRPC is the baseline,
// the others cross both proxies of a hop. Run:
//
//	go test ./proxy -run '^$' -bench 'GRPC' -benchmem -count 5

func benchGRPCApp(b *testing.B) net.Addr {
	s := grpc.NewServer()
	s.RegisterService(&echoService, struct{}{})
	ln := listen(b)
	go s.Serve(ln)
	b.Cleanup(s.Stop)
	return ln.Addr()
}

func benchGRPCClient(b *testing.B, addr string) *grpc.ClientConn {
	cc, err := grpc.NewClient("passthrough:///svc-b.test:9090",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}),
	)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cc.Close() })
	return cc
}

func runUnaryCalls(b *testing.B, cc *grpc.ClientConn, traceparent string) {
	ctx := context.Background()
	if traceparent != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", traceparent)
	}
	in, out := wrapperspb.String("hi"), new(wrapperspb.StringValue)
	call := func() {
		if err := cc.Invoke(ctx, "/hoptrace.test.Echo/Unary", in, out); err != nil {
			b.Fatal(err)
		}
	}
	call() // connect outside the timer
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for b.Loop() {
		call()
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

func BenchmarkDirectGRPC(b *testing.B) {
	runUnaryCalls(b, benchGRPCClient(b, benchGRPCApp(b).String()), "")
}

func benchGRPCChain(b *testing.B, rate float64) (*chain, *discard) {
	rec := &discard{}
	c := newChain(b, mustAddrPort(b, benchGRPCApp(b)), func(_ Direction, cfg *Config) {
		cfg.Recorder = rec
		cfg.Sampler = spans.NewSampler(rate)
	})
	return c, rec
}

// BenchmarkProxiedGRPCUnsampled: the common case, a context arrives unsampled.
func BenchmarkProxiedGRPCUnsampled(b *testing.B) {
	c, rec := benchGRPCChain(b, 0)
	runUnaryCalls(b, benchGRPCClient(b, c.outLn.Addr().String()), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	if rec.n.Load() != 0 {
		b.Fatal("unsampled calls recorded spans")
	}
}

// BenchmarkProxiedGRPCSampled: every call is traced, four spans each.
func BenchmarkProxiedGRPCSampled(b *testing.B) {
	c, rec := benchGRPCChain(b, 1)
	runUnaryCalls(b, benchGRPCClient(b, c.outLn.Addr().String()), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if rec.n.Load() == 0 {
		b.Fatal("no spans recorded")
	}
}
